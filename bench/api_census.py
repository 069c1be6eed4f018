"""Which PyTorch names the programs of pytorch/examples and the official tutorials use,
and whether distnn has each one.

    python bench/api_census.py            # a table of the names distnn lacks, per program
    python bench/api_census.py --all      # every name, per program
    python bench/api_census.py --json     # {program: [missing names]}

``PROGRAMS`` lists, per program, the dotted names its source uses (read from the
programs, recorded here by hand: ``torch.*`` resolves in ``distnn``, ``torchvision.*``
in ``distnn.vision``; Tensor and Module methods are written ``torch.Tensor.x`` and
``torch.nn.Module.x``). ``NOT_SUPPORTED`` names the ones distnn lacks on purpose or
for now, each with the reason README.md's "Not supported yet" gives.
tests/programs/test_api_census.py holds distnn to this list: every name resolves
except those in ``NOT_SUPPORTED``, and those do not (so the list is kept current).
"""

import argparse
import json

COMMON = """
    torch.manual_seed torch.device torch.no_grad torch.cuda.is_available torch.backends.mps.is_available
    torch.save torch.load torch.nn.Module torch.nn.Module.to torch.nn.Module.train torch.nn.Module.eval
    torch.nn.Module.parameters torch.nn.Module.state_dict torch.nn.Module.load_state_dict
    torch.Tensor.to torch.Tensor.item torch.Tensor.backward torch.Tensor.size torch.Tensor.view
    torch.optim.Optimizer.zero_grad torch.optim.Optimizer.step torch.utils.data.DataLoader
"""

MNIST_CLASSIFIER = COMMON + """
    torch.nn.functional.relu torch.nn.functional.log_softmax torch.nn.functional.nll_loss
    torch.Tensor.argmax torch.Tensor.eq torch.Tensor.view_as torch.Tensor.sum torch.Tensor.max
    torch.optim.lr_scheduler.StepLR torch.optim.lr_scheduler.StepLR.step
    torchvision.datasets.MNIST torchvision.transforms.Compose torchvision.transforms.ToTensor
    torchvision.transforms.Normalize
"""

PROGRAMS = {
    "examples/mnist": MNIST_CLASSIFIER + """
        torch.nn.Conv2d torch.nn.Dropout torch.nn.Dropout2d torch.nn.Linear torch.nn.functional.max_pool2d
        torch.nn.functional.dropout torch.flatten torch.optim.Adadelta torch.optim.SGD
        torch.accelerator.is_available torch.accelerator.current_accelerator
    """,
    "examples/mnist_rnn": MNIST_CLASSIFIER + """
        torch.nn.LSTM torch.nn.BatchNorm1d torch.nn.Dropout2d torch.nn.Linear torch.Tensor.reshape
        torch.optim.Adadelta
    """,
    "examples/mnist_hogwild": MNIST_CLASSIFIER + """
        torch.multiprocessing.set_start_method torch.multiprocessing.Process torch.nn.Module.share_memory
        torch.utils.data.sampler.Sampler torch.nn.Conv2d torch.nn.Dropout2d torch.nn.Linear
        torch.nn.functional.max_pool2d torch.nn.functional.dropout torch.optim.SGD
    """,
    "examples/mnist_forward_forward": COMMON + """
        torch.nn.Linear torch.nn.ReLU torch.optim.Adam torch.tensor torch.randint torch.cat torch.mm
        torch.log1p torch.exp torch.flatten torch.Tensor.clone torch.Tensor.max torch.Tensor.pow
        torch.Tensor.mean torch.Tensor.unsqueeze torch.Tensor.norm torch.Tensor.T torch.Tensor.detach
        torch.Tensor.argmax torch.Tensor.eq torch.Tensor.float torch.xpu.is_available
        torchvision.datasets.MNIST torchvision.transforms.Compose torchvision.transforms.ToTensor
        torchvision.transforms.Normalize torchvision.transforms.Lambda
    """,
    "examples/regression": """
        torch.randn torch.cat torch.nn.Linear torch.nn.Module.zero_grad torch.nn.Module.parameters
        torch.nn.functional.smooth_l1_loss torch.no_grad torch.Tensor.unsqueeze torch.Tensor.mm
        torch.Tensor.item torch.Tensor.backward torch.Tensor.add_ torch.Tensor.grad torch.Tensor.data
        torch.Tensor.view torch.Tensor.size torch.Tensor.__pow__ torch.Tensor.__format__
    """,
    "examples/time_sequence_prediction": COMMON + """
        torch.nn.LSTMCell torch.nn.Linear torch.nn.Parameter torch.empty torch.zeros torch.double
        torch.cat torch.from_numpy torch.nn.MSELoss torch.optim.LBFGS torch.nn.Module.double
        torch.Tensor.device torch.Tensor.split torch.Tensor.cpu torch.Tensor.detach torch.Tensor.numpy
    """,
    "examples/word_language_model": COMMON + """
        torch.nn.Dropout torch.nn.Embedding torch.nn.LSTM torch.nn.GRU torch.nn.RNN torch.nn.Linear
        torch.nn.init.uniform_ torch.nn.init.zeros_ torch.nn.functional.log_softmax torch.nn.CrossEntropyLoss
        torch.nn.Transformer torch.nn.TransformerEncoder torch.nn.TransformerEncoderLayer
        torch.nn.Module.register_buffer torch.nn.Module.zero_grad torch.nn.LSTM.flatten_parameters
        torch.nn.utils.clip_grad_norm_ torch.zeros torch.ones torch.arange torch.exp torch.sin torch.cos
        torch.triu torch.cat torch.tensor torch.randint torch.multinomial torch.float torch.long torch.int64
        torch.LongTensor torch.Tensor torch.onnx.export torch.Tensor.new_zeros torch.Tensor.unsqueeze
        torch.Tensor.float torch.Tensor.transpose torch.Tensor.masked_fill torch.Tensor.type
        torch.Tensor.narrow torch.Tensor.t torch.Tensor.contiguous torch.Tensor.detach torch.Tensor.data
        torch.Tensor.add_ torch.Tensor.grad torch.Tensor.zero_ torch.Tensor.squeeze torch.Tensor.div
        torch.Tensor.exp torch.Tensor.cpu torch.Tensor.fill_ torch.Tensor.device torch.Tensor.__eq__
        torch.Tensor.__setitem__ torch.accelerator.is_available torch.accelerator.current_accelerator
    """,
    "examples/vae": COMMON + """
        torch.nn.Linear torch.nn.functional.relu torch.nn.functional.binary_cross_entropy torch.optim.Adam
        torch.exp torch.randn_like torch.clamp torch.sigmoid torch.log torch.where torch.max torch.le torch.gt
        torch.ones_like torch.abs torch.tensor torch.pow torch.sum torch.cat torch.randn
        torch.Tensor.pow torch.Tensor.exp torch.Tensor.cpu
        torchvision.datasets.MNIST torchvision.transforms.ToTensor torchvision.utils.save_image
        torchvision.utils.make_grid
    """,
    "examples/siamese_network": COMMON + """
        torchvision.models.resnet18 torchvision.datasets.MNIST torchvision.transforms
        torch.nn.Conv2d torch.nn.Sequential torch.nn.Linear torch.nn.ReLU torch.nn.Sigmoid torch.nn.BCELoss
        torch.nn.Module.children torch.nn.Module.apply torch.nn.init.xavier_uniform_ torch.cat torch.tensor
        torch.where torch.float torch.utils.data.Dataset torch.optim.Adadelta torch.optim.lr_scheduler.StepLR
        torch.Tensor.fill_ torch.Tensor.data torch.Tensor.unsqueeze torch.Tensor.clone torch.Tensor.float
        torch.Tensor.squeeze torch.Tensor.sum torch.Tensor.eq torch.Tensor.view_as torch.Tensor.__array__
    """,
    "examples/distributed/ddp": """
        torch.distributed.init_process_group torch.distributed.destroy_process_group torch.distributed.barrier
        torch.distributed.get_rank torch.distributed.get_world_size torch.distributed.get_backend
        torch.multiprocessing.spawn torch.nn.parallel.DistributedDataParallel torch.nn.Linear torch.nn.ReLU
        torch.nn.MSELoss torch.optim.SGD torch.randn torch.save torch.load torch.cuda.device_count
        torch.nn.Module.to torch.Tensor.to
    """,
    "examples/distributed/ddp-tutorial-series": """
        torch.distributed.init_process_group torch.distributed.destroy_process_group
        torch.multiprocessing.spawn torch.nn.parallel.DistributedDataParallel
        torch.utils.data.distributed.DistributedSampler
        torch.utils.data.distributed.DistributedSampler.set_epoch torch.utils.data.Dataset
        torch.utils.data.DataLoader torch.nn.functional.cross_entropy torch.nn.Linear torch.nn.Module
        torch.optim.SGD torch.optim.Optimizer torch.rand torch.cuda.set_device torch.cuda.device_count
        torch.save
    """,
    "examples/dcgan": COMMON + """
        torch.nn.parallel torch.nn.parallel.data_parallel torch.backends.cudnn.benchmark
        torch.nn.init.normal_ torch.nn.init.zeros_ torch.nn.Sequential torch.nn.ConvTranspose2d
        torch.nn.BatchNorm2d torch.nn.ReLU torch.nn.Tanh torch.nn.Conv2d torch.nn.LeakyReLU torch.nn.Sigmoid
        torch.nn.BCELoss torch.nn.Module.apply torch.nn.Module.zero_grad torch.optim.Adam torch.randn torch.full
        torch.Tensor.is_cuda torch.Tensor.squeeze torch.Tensor.dtype torch.Tensor.fill_ torch.Tensor.detach
        torch.Tensor.mean
        torchvision.datasets.ImageFolder torchvision.datasets.LSUN torchvision.datasets.CIFAR10
        torchvision.datasets.MNIST torchvision.datasets.FakeData torchvision.transforms.Resize
        torchvision.transforms.CenterCrop torchvision.transforms.ToTensor torchvision.transforms.Normalize
        torchvision.transforms.Compose torchvision.utils.save_image
    """,
    "examples/super_resolution": COMMON + """
        torch.nn.ReLU torch.nn.Conv2d torch.nn.PixelShuffle torch.nn.init.orthogonal_
        torch.nn.init.calculate_gain torch.nn.MSELoss torch.optim.Adam torch.utils.data.Dataset
        torch.Tensor.cpu torch.Tensor.numpy torch.Tensor.data
        torchvision.transforms.Compose torchvision.transforms.CenterCrop torchvision.transforms.Resize
        torchvision.transforms.ToTensor
    """,
    "examples/reinforcement_learning": """
        torch.manual_seed torch.nn.Module torch.nn.Linear torch.nn.functional.relu torch.nn.functional.softmax
        torch.nn.functional.smooth_l1_loss torch.optim.Adam torch.from_numpy torch.tensor torch.stack torch.cat
        torch.distributions.Categorical torch.Tensor.float torch.Tensor.unsqueeze torch.Tensor.item
        torch.Tensor.mean torch.Tensor.std torch.Tensor.sum torch.Tensor.backward
        torch.optim.Optimizer.zero_grad torch.optim.Optimizer.step
    """,
    "examples/gcn": COMMON + """
        torch.nn.Parameter torch.Tensor torch.nn.init.xavier_normal_ torch.nn.init.zeros_ torch.mm
        torch.spmm torch.nn.Dropout torch.nn.functional.relu torch.nn.functional.log_softmax
        torch.FloatTensor torch.LongTensor torch.sum torch.diag torch.sparse_coo_tensor torch.ones torch.eye
        torch.sqrt torch.randperm torch.int64 torch.optim.Adam torch.nn.NLLLoss torch.Tensor.to_sparse
        torch.Tensor.__matmul__ torch.Tensor.__rtruediv__ torch.Tensor.__setitem__ torch.Tensor.max
        torch.Tensor.argmax torch.Tensor.float
    """,
    "examples/fast_neural_style": COMMON + """
        torch.nn.InstanceNorm2d torch.nn.ReflectionPad2d torch.nn.Conv2d torch.nn.ReLU torch.nn.Sequential
        torch.nn.Sequential.add_module torch.nn.functional.interpolate torch.nn.MSELoss torch.optim.Adam
        torch.from_numpy torch.onnx.export torch.nn.Module.cpu torch.Tensor.mul torch.Tensor.repeat
        torch.Tensor.clone torch.Tensor.clamp torch.Tensor.numpy torch.Tensor.transpose torch.Tensor.bmm
        torch.Tensor.new_tensor torch.Tensor.div_ torch.Tensor.unsqueeze torch.Tensor.requires_grad
        torchvision.models.vgg16 torchvision.datasets.ImageFolder torchvision.transforms.Resize
        torchvision.transforms.CenterCrop torchvision.transforms.ToTensor torchvision.transforms.Lambda
        torchvision.transforms.Compose
    """,
    "examples/imagenet": COMMON + """
        torch.backends.cudnn.deterministic torch.backends.cudnn.benchmark torch.distributed.init_process_group
        torch.distributed.all_reduce torch.distributed.ReduceOp.SUM torch.multiprocessing.spawn
        torch.nn.parallel.DistributedDataParallel torch.nn.DataParallel torch.nn.CrossEntropyLoss
        torch.optim.SGD torch.optim.lr_scheduler.StepLR torch.optim.lr_scheduler.StepLR.state_dict
        torch.optim.lr_scheduler.StepLR.load_state_dict torch.optim.Optimizer.state_dict
        torch.optim.Optimizer.load_state_dict torch.utils.data.distributed.DistributedSampler
        torch.utils.data.Subset torch.cuda.set_device torch.cuda.device_count torch.tensor torch.float32
        torch.nn.Module.cuda torch.Tensor.cuda torch.Tensor.topk torch.Tensor.t torch.Tensor.eq
        torch.Tensor.expand_as torch.Tensor.reshape torch.Tensor.float torch.Tensor.sum torch.Tensor.mul_
        torch.Tensor.tolist
        torchvision.models.resnet18 torchvision.models.resnet50 torchvision.models.alexnet torchvision.models.vgg16
        torchvision.datasets.FakeData torchvision.datasets.ImageFolder torchvision.transforms.RandomResizedCrop
        torchvision.transforms.RandomHorizontalFlip torchvision.transforms.Resize torchvision.transforms.CenterCrop
        torchvision.transforms.ToTensor torchvision.transforms.Normalize torchvision.transforms.Compose
    """,
    "tutorials/quickstart": COMMON + """
        torch.nn.Flatten torch.nn.Sequential torch.nn.Linear torch.nn.ReLU torch.nn.CrossEntropyLoss
        torch.optim.SGD torch.float torch.Tensor.shape torch.Tensor.dtype torch.Tensor.argmax torch.Tensor.type
        torchvision.datasets.FashionMNIST torchvision.transforms.ToTensor
    """,
    "tutorials/tensors": """
        torch.tensor torch.from_numpy torch.ones_like torch.rand_like torch.rand torch.ones torch.zeros
        torch.cat torch.stack torch.matmul torch.mul torch.float torch.cuda.is_available
        torch.Tensor.shape torch.Tensor.dtype torch.Tensor.device torch.Tensor.to torch.Tensor.__setitem__
        torch.Tensor.T torch.Tensor.matmul torch.Tensor.__matmul__ torch.Tensor.mul torch.Tensor.sum
        torch.Tensor.item torch.Tensor.add_ torch.Tensor.copy_ torch.Tensor.t_ torch.Tensor.numpy
    """,
    "tutorials/ddp": """
        torch.distributed.init_process_group torch.distributed.destroy_process_group torch.distributed.barrier
        torch.distributed.get_rank torch.multiprocessing.spawn torch.nn.parallel.DistributedDataParallel
        torch.nn.parallel.DistributedDataParallel.state_dict
        torch.nn.parallel.DistributedDataParallel.load_state_dict torch.nn.Linear torch.nn.ReLU
        torch.nn.MSELoss torch.optim.SGD torch.randn torch.save torch.load torch.cuda.device_count
    """,
}

# Names distnn lacks, with the reason (README.md, "Not supported yet", says the same).
SMALL = "not yet: small, PyTorch-shaped, planned"
NOT_SUPPORTED = {
    "torch.distributions.Categorical": "no torch.distributions",
    "torch.spmm": "no sparse tensors",
    "torch.sparse_coo_tensor": "no sparse tensors",
    "torch.Tensor.to_sparse": "no sparse tensors",
    "torch.nn.DataParallel": "single-process multi-GPU data parallelism; use DistributedDataParallel",
    "torch.nn.parallel.data_parallel": "single-process multi-GPU data parallelism; use DistributedDataParallel",
    "torchvision.models.vgg16": "distnn.vision.models has the ResNet family only (and no pretrained weights)",
    "torchvision.models.alexnet": "distnn.vision.models has the ResNet family only (and no pretrained weights)",
    "torchvision.datasets.ImageFolder": "distnn.vision.datasets has MNIST, FashionMNIST, CIFAR10/100 and FakeData only",
    "torchvision.datasets.LSUN": "distnn.vision.datasets has MNIST, FashionMNIST, CIFAR10/100 and FakeData only",
}


def names(program):
    """The program's names, each once, in the order written."""
    return list(dict.fromkeys(PROGRAMS[program].split()))


def resolve(name, torch_module, vision_module):
    """The object a dotted name stands for, with ``torch`` read as ``torch_module`` and
    ``torchvision`` as ``vision_module``, by attribute access alone (as after a bare
    ``import torch``); raises AttributeError naming the first missing part."""
    root, *parts = name.split(".")
    obj = {"torch": torch_module, "torchvision": vision_module}[root]
    path = root
    for part in parts:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{name}: {path} has no {part!r}") from None
        path = f"{path}.{part}"
    return obj


def resolves(name, torch_module, vision_module):
    try:
        resolve(name, torch_module, vision_module)
        return True
    except AttributeError:
        return False


def missing_in_distnn():
    """{program: [names distnn lacks]}."""
    import distnn
    import distnn.vision
    return {program: [n for n in names(program) if not resolves(n, distnn, distnn.vision)]
            for program in PROGRAMS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="list every name, not only the missing ones")
    parser.add_argument("--json", action="store_true", help="print {program: [missing names]} as JSON")
    args = parser.parse_args()
    missing = missing_in_distnn()
    if args.json:
        print(json.dumps(missing))
        return
    total = sorted({n for program in PROGRAMS for n in names(program)})
    lacking = sorted({n for ms in missing.values() for n in ms})
    print(f"{len(PROGRAMS)} programs, {len(total)} distinct names, {len(lacking)} missing in distnn\n")
    for program in PROGRAMS:
        shown = names(program) if args.all else missing[program]
        print(f"{program:40s} {len(names(program)):3d} names, {len(missing[program])} missing")
        for n in shown:
            mark = "MISSING" if n in missing[program] else "ok"
            reason = NOT_SUPPORTED.get(n, "")
            print(f"    {mark:8s}{n}" + (f"  ({reason})" if reason else ""))


if __name__ == "__main__":
    main()
