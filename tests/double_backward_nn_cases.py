"""Double-backward cases for the ops behind ``nn.functional`` (activation,
classification loss, conv, embedding, loss, normalization, padding, pool, recurrent), variants
that take other code paths, and first derivatives differentiated again. Collected
into ``CASES`` by ``double_backward_cases``, which describes the case format.
"""

import distnn
import distnn.nn.functional as F
from distnn.ops.recurrent import gru_layer, lstm_layer, mkldnn_lstm_layer
from double_backward_inputs import (EMBED_IDX, LABELS, LABELS_4D, MASK, ROWS, apart, case, const, const64, spread,
                                    uniform, with_zeros)

grad = distnn.autograd.grad


ACTIVATION = [
    case("relu", lambda x: F.relu(x) ** 2, spread((2, 3), 1, -2, 2)),
    case("relu6", lambda x: F.relu6(x) ** 2, spread((2, 4), 2, -1, 7, kinks=(0, 6))),
    case("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.8) ** 2, spread((2, 3), 3, kinks=(-0.5, 0.8))),
    case("threshold", lambda x: F.threshold(x, 0.1, -2.0) ** 2, spread((2, 3), 4, kinks=(0.1,))),
    case("leaky_relu", lambda x: F.leaky_relu(x, 0.2) ** 2, spread((2, 3), 5)),
    case("prelu_single_weight", lambda x, w: F.prelu(x, w) ** 2, spread((2, 3, 2), 6), uniform((1,), 7, 0.1, 0.4)),
    case("prelu_per_channel", lambda x, w: F.prelu(x, w) ** 2, spread((2, 3, 2), 8), uniform((3,), 9, 0.1, 0.4)),
    case("elu", lambda x: F.elu(x, 0.7), spread((2, 3), 10, -2, 2)),
    case("selu", lambda x: F.selu(x), spread((2, 3), 11, -2, 2)),
    case("celu", lambda x: F.celu(x, 1.3), spread((2, 3), 12, -2, 2)),
    case("gelu", lambda x: F.gelu(x), uniform((2, 3), 13, -2, 2)),
    case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), uniform((2, 3), 14, -2, 2)),
    case("hardshrink", lambda x: F.hardshrink(x, 0.5) ** 2, spread((2, 3), 15, kinks=(-0.5, 0.5))),
    case("softshrink", lambda x: F.softshrink(x, 0.5) ** 2, spread((2, 3), 16, kinks=(-0.5, 0.5))),
    case("hardsigmoid", lambda x: F.hardsigmoid(x) ** 2, spread((2, 4), 17, -4, 4, kinks=(-3, 3))),
    case("hardswish", lambda x: F.hardswish(x), spread((2, 4), 18, -4, 4, kinks=(-3, 3))),
    case("logsigmoid", lambda x: F.logsigmoid(x), uniform((2, 3), 19, -2, 2)),
    case("mish", lambda x: F.mish(x), uniform((2, 3), 20, -2, 2)),
    case("sigmoid", lambda x: x.sigmoid(), uniform((2, 3), 21, -2, 2)),
    case("silu", lambda x: F.silu(x), uniform((2, 3), 22, -2, 2)),
    case("tanh", lambda x: x.tanh(), uniform((2, 3), 23, -2, 2)),
    # beta * x crosses the threshold (x = 0.75): both branches
    case("softplus", lambda x: F.softplus(x, beta=2.0, threshold=1.5), spread((2, 3), 24, -2, 2, kinks=(0.75,))),
    case("softmax", lambda x: F.softmax(x, dim=1), uniform((2, 4), 25, -2, 2)),
    case("softmin", lambda x: F.softmin(x, dim=0), uniform((3, 2), 26, -2, 2)),
    case("log_softmax", lambda x: F.log_softmax(x, dim=-1), uniform((2, 4), 27, -2, 2)),
]

CLASSIFICATION_LOSS = [
    case("cross_entropy", lambda x: F.cross_entropy(x, const(LABELS)), uniform((3, 4), 40, -2, 2)),
    case("cross_entropy_weight_ignore_index",
         lambda x: F.cross_entropy(x, const(LABELS), weight=const64((4,), 41), ignore_index=0),
         uniform((3, 4), 42, -2, 2)),
    case("nll_loss_sum", lambda x: F.nll_loss(F.log_softmax(x, 1), const(LABELS), reduction="sum"),
         uniform((3, 4), 43, -2, 2)),
    case("nll_loss_4d_weight_ignore_index",
         lambda x: F.nll_loss(F.log_softmax(x, 1), const(LABELS_4D), weight=const64((3,), 44), ignore_index=1),
         uniform((2, 3, 2, 2), 45, -2, 2)),
    case("nll_loss_3d_none", lambda x: F.nll_loss(x, const([[0, 2], [1, 1]]), reduction="none") ** 2,
         uniform((2, 3, 2), 46, -2, 2)),
    case("cross_entropy_label_smoothing", lambda x: F.cross_entropy(x, const(LABELS), label_smoothing=0.1),
         uniform((3, 4), 47, -2, 2)),
    case("cross_entropy_label_smoothing_weight_ignore_index",
         lambda x: F.cross_entropy(x, const(LABELS), weight=const64((4,), 48), ignore_index=3,
                                   reduction="sum", label_smoothing=0.2),
         uniform((3, 4), 49, -2, 2)),
    case("cross_entropy_label_smoothing_none",
         lambda x: F.cross_entropy(x, const(LABELS), reduction="none", label_smoothing=0.3),
         uniform((3, 4), 50, -2, 2)),
    case("cross_entropy_probabilities", lambda x, p: F.cross_entropy(x, p),
         uniform((3, 4), 51, -2, 2), uniform((3, 4), 52, 0.0, 0.5)),
    case("cross_entropy_probabilities_smoothing_weight",
         lambda x, p, w: F.cross_entropy(x, p, weight=w, label_smoothing=0.2),
         uniform((3, 4), 53, -2, 2), uniform((3, 4), 54, 0.0, 0.5), uniform((4,), 55, 0.5, 1.5)),
    case("cross_entropy_probabilities_none", lambda x, p: F.cross_entropy(x, p, reduction="none") ** 2,
         uniform((3, 4), 56, -2, 2), uniform((3, 4), 57, 0.0, 0.5)),
    case("cross_entropy_probabilities_4d_sum", lambda x, p: F.cross_entropy(x, p, reduction="sum"),
         uniform((1, 3, 2, 2), 58, -2, 2), uniform((1, 3, 2, 2), 59, 0.0, 0.5)),
]

CONV = [
    case("conv1d", lambda x, w, b: F.conv1d(x, w, b),
         uniform((1, 2, 5), 60), uniform((2, 2, 3), 61), uniform((2,), 62)),
    case("conv2d_stride_padding_groups", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
         uniform((1, 2, 4, 4), 63), uniform((2, 1, 3, 3), 64), uniform((2,), 65)),
    case("conv2d_dilation", lambda x, w: F.conv2d(x, w, dilation=2),
         uniform((1, 1, 5, 5), 66), uniform((1, 1, 2, 2), 67)),
    case("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1),
         uniform((1, 2, 2, 2), 68), uniform((2, 1, 3, 3), 69), uniform((1,), 70)),
]

EMBEDDING = [
    case("embedding", lambda w: F.embedding(const(EMBED_IDX), w) ** 2, uniform((5, 2), 150)),
    case("embedding_padding_idx", lambda w: F.embedding(const(EMBED_IDX), w, padding_idx=0) ** 2,
         uniform((5, 2), 151)),
]

LOSS = [
    case("mse_loss", lambda x, y: F.mse_loss(x, y), uniform((2, 3), 240), uniform((2, 3), 241)),
    case("mse_loss_none", lambda x, y: F.mse_loss(x, y, reduction="none") * x, uniform((2, 3), 242),
         uniform((2, 3), 243)),
    case("l1_loss", lambda x, y: F.l1_loss(x, y) ** 2, *apart((2, 3), 244)),
    case("l1_loss_none", lambda x, y: F.l1_loss(x, y, reduction="none") ** 2, *apart((2, 3), 246)),
    case("smooth_l1_loss", lambda x, y: F.smooth_l1_loss(x, y, beta=0.5), *apart((2, 3), 248, (-0.5, 0, 0.5))),
    case("huber_loss", lambda x, y: F.huber_loss(x, y, reduction="sum", delta=0.5),
         *apart((2, 3), 250, (-0.5, 0, 0.5))),
    case("binary_cross_entropy", lambda p, t: F.binary_cross_entropy(p, t),
         uniform((2, 3), 252, 0.1, 0.9), uniform((2, 3), 253, 0.0, 1.0)),
    case("binary_cross_entropy_weight_sum",
         lambda p, t: F.binary_cross_entropy(p, t, weight=const64((2, 3), 254), reduction="sum"),
         uniform((2, 3), 255, 0.1, 0.9), uniform((2, 3), 256, 0.0, 1.0)),
    case("binary_cross_entropy_with_logits", lambda x, t: F.binary_cross_entropy_with_logits(x, t),
         uniform((2, 3), 257, -2, 2), uniform((2, 3), 258, 0.0, 1.0)),
    case("binary_cross_entropy_with_logits_weight_pos_weight",
         lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight=const64((2, 3), 259), reduction="none",
                                                         pos_weight=const64((3,), 260, 0.5, 3.0)),
         uniform((2, 3), 261, -2, 2), uniform((2, 3), 262, 0.0, 1.0)),
    case("kl_div", lambda x, t: F.kl_div(x, t, reduction="batchmean"),
         uniform((2, 3), 263, -2, 0), uniform((2, 3), 264, 0.1, 1.0)),
    case("kl_div_log_target", lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True),
         uniform((2, 3), 265, -2, 0), uniform((2, 3), 266, -2, 0)),
    case("kl_div_none", lambda x, t: F.kl_div(x, t, reduction="none") * x,
         uniform((2, 3), 267, -2, 0), uniform((2, 3), 268, 0.1, 1.0)),
]


def _running_stats(seed):
    return const64((2,), seed, -0.5, 0.5), const64((2,), seed + 1, 0.5, 1.5)


NORMALIZATION = [
    case("normalize_p2", lambda x: F.normalize(x, p=2.0, dim=1), uniform((2, 3), 280)),
    case("normalize_p1", lambda x: F.normalize(x, p=1.0, dim=0), spread((2, 3), 281)),
    case("normalize_p3", lambda x: F.normalize(x, p=3.0, dim=1), spread((2, 3), 282)),
    case("normalize_inf", lambda x: F.normalize(x, p=float("inf"), dim=1), spread((2, 3), 283)),
    case("batch_norm_training", lambda x, w, b: F.batch_norm(x, *_running_stats(284), w, b, training=True),
         uniform((3, 2, 2), 286), uniform((2,), 287, 0.5, 1.5), uniform((2,), 288)),
    case("batch_norm_eval", lambda x, w, b: F.batch_norm(x, *_running_stats(289), w, b, training=False) ** 2,
         uniform((3, 2, 2), 291), uniform((2,), 292, 0.5, 1.5), uniform((2,), 293)),
    case("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b),
         uniform((2, 4, 2), 294), uniform((4,), 295, 0.5, 1.5), uniform((4,), 296)),
    case("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b),
         uniform((2, 4), 297), uniform((4,), 298, 0.5, 1.5), uniform((4,), 299)),
    case("rms_norm", lambda x, w: F.rms_norm(x, (4,), w), uniform((2, 4), 300), uniform((4,), 301, 0.5, 1.5)),
    case("instance_norm", lambda x: F.instance_norm(x), uniform((1, 2, 3), 302)),
]

PADDING = [
    case("pad_constant", lambda x: F.pad(x, (1, 2), value=0.5) ** 2, uniform((2, 3), 310)),
    case("pad_reflect", lambda x: F.pad(x, (2, 1), mode="reflect") ** 2, uniform((1, 2, 3), 311)),
    case("pad_replicate", lambda x: F.pad(x, (1, 1, 0, 1), mode="replicate") ** 2, uniform((1, 2, 2), 312)),
    case("pad_circular", lambda x: F.pad(x, (1, 2), mode="circular") ** 2, uniform((1, 2, 3), 313)),
]


POOL = [
    case("max_pool2d_k2", lambda x: F.max_pool2d(x, 2) ** 2, spread((1, 1, 4, 4), 320)),
    case("max_pool2d_k3_s2_p1", lambda x: F.max_pool2d(x, 3, 2, padding=1) ** 2, spread((1, 1, 5, 5), 321)),
    case("avg_pool2d", lambda x: F.avg_pool2d(x, 2) ** 2, uniform((1, 1, 4, 4), 322)),
    case("avg_pool2d_exclude_pad", lambda x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False) ** 2,
         uniform((1, 1, 4, 4), 323)),
    case("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 2)) ** 2, uniform((1, 1, 3, 3), 324)),
    case("adaptive_max_pool2d", lambda x: F.adaptive_max_pool2d(x, 2) ** 2, spread((1, 2, 3, 3), 325)),
]

RECURRENT = [
    case("lstm_layer", lambda xw, h, c, w, b: lstm_layer(xw, h, c, w, b)[0], uniform((2, 1, 8), 480),
         uniform((1, 2), 481), uniform((1, 2), 482), uniform((8, 2), 483), uniform((8,), 484)),
    # oneDNN's LSTM takes float32 only (None where it is absent: then the plain layer of
    # the projection); finite differences need TOLERANCES' wider step
    case("mkldnn_lstm_layer_float32_batch_first_reverse", lambda x, h, c, w_ih, w_hh, b_ih, b_hh: (
        mkldnn_lstm_layer(*(t.float() for t in (x, h, c, w_ih, w_hh, b_ih, b_hh)), time_dim=1, reverse=True)
        or lstm_layer(F.linear(x, w_ih, b_ih), h, c, w_hh, b_hh, time_dim=1, reverse=True))[0].double(),
        uniform((1, 3, 2), 489), uniform((1, 2), 490), uniform((1, 2), 491), uniform((8, 2), 492),
        uniform((8, 2), 493), uniform((8,), 494), uniform((8,), 495)),
    case("gru_layer_batch_first_reverse", lambda xw, h, w, b: gru_layer(xw, h, w, b, time_dim=1, reverse=True)[0],
         uniform((1, 2, 6), 485), uniform((1, 2), 486), uniform((6, 2), 487), uniform((6,), 488)),
]

# Variants that take other code paths: unbatched, non-contiguous, broadcast, odd geometry,
# and nn.functional compositions.
VARIANTS = [
    case("softmax_of_transpose", lambda x: F.softmax(x.t(), dim=1), uniform((4, 2), 400, -2, 2)),
    case("layer_norm_2d_no_affine_of_permute", lambda x: F.layer_norm(x.permute(2, 0, 1), (2, 3)) ** 2,
         uniform((2, 3, 2), 401)),
    case("batch_norm_2d_input", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
         uniform((3, 2), 402), uniform((2,), 403, 0.5, 1.5), uniform((2,), 404)),
    case("group_norm_no_affine", lambda x: F.group_norm(x, 1, eps=1e-3) ** 2, uniform((2, 2, 2), 405)),
    case("rms_norm_2d_no_weight", lambda x: F.rms_norm(x, (2, 2)), uniform((2, 2, 2), 406)),
    case("cross_entropy_unbatched", lambda x: F.cross_entropy(x, const(2)), uniform((4,), 407, -2, 2)),
    case("cross_entropy_4d_none", lambda x: F.cross_entropy(x, const(LABELS_4D), reduction="none") ** 2,
         uniform((2, 3, 2, 2), 408, -2, 2)),
    case("conv1d_unbatched", lambda x, w: F.conv1d(x, w, padding=1), uniform((2, 4), 409), uniform((1, 2, 3), 410)),
    case("conv2d_same_even_kernel", lambda x, w: F.conv2d(x, w, padding="same"),
         uniform((1, 1, 3, 3), 411), uniform((1, 1, 2, 2), 412)),
    case("conv_transpose2d_groups_dilation_output_padding",
         lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=1, groups=2, dilation=1),
         uniform((1, 2, 2, 2), 413), uniform((2, 1, 2, 2), 414)),
    case("max_pool2d_dilation", lambda x: F.max_pool2d(x, 2, 1, dilation=2) ** 2, spread((1, 1, 4, 4), 415)),
    case("max_pool1d", lambda x: F.max_pool1d(x, 2) ** 2, spread((1, 2, 4), 416)),
    case("avg_pool2d_ceil_divisor_override",
         lambda x: F.avg_pool2d(x, 2, ceil_mode=True, divisor_override=3) ** 2, uniform((1, 1, 3, 3), 417)),
    case("adaptive_avg_pool1d", lambda x: F.adaptive_avg_pool1d(x, 2) ** 2, uniform((1, 2, 3), 418)),
    case("pad_constant_crop", lambda x: F.pad(x, (-1, 2)) ** 2, uniform((2, 3), 419)),
    case("pad_reflect_2d", lambda x: F.pad(x, (1, 1, 2, 0), mode="reflect") ** 2, uniform((1, 1, 3, 2), 420)),
    case("div_broadcast", lambda x, y: x / y, uniform((2, 3), 421), uniform((3,), 422, 0.5, 1.5)),
    case("where_broadcast", lambda x, y: distnn.where(const(MASK[0, :3]), x, y) ** 2,
         uniform((2, 3), 423), uniform((1, 3), 424)),
    case("pow_fractional", lambda x: x ** 2.5, uniform((2, 3), 425, 0.5, 1.5)),
    case("matmul_1d_3d", lambda u, b: u @ b, uniform((3,), 426), uniform((2, 3, 2), 427)),
    case("matmul_3d_1d", lambda a, v: a @ v, uniform((2, 2, 3), 428), uniform((3,), 429)),
    case("linear_1d_input", lambda x, w, b: F.linear(x, w, b), uniform((3,), 430), uniform((2, 3), 431),
         uniform((2,), 432)),
    case("einsum_three_operands", lambda a, b, c: distnn.einsum("ij,jk,kl->il", a, b, c),
         uniform((2, 2), 433), uniform((2, 3), 434), uniform((3, 2), 435)),
    case("einsum_transpose", lambda a: distnn.einsum("ij->ji", a) ** 2, uniform((2, 3), 436)),
    case("slice_negative_step", lambda x: x[::-1, 1:] ** 2, uniform((3, 3), 437)),
    case("index_basic_and_advanced", lambda x: x[1:, const([0, 2, 0])] ** 2, uniform((3, 3), 438)),
    case("index_put_mask_tensor_value", lambda x, v: distnn.ops.index_put(x, const(MASK), v) ** 2,
         uniform((3, 4), 439), uniform((), 440)),
    case("gather_3d_last_dim", lambda x: x.gather(-1, const([[[1, 0]], [[2, 2]]])) ** 2, uniform((2, 1, 3), 441)),
    case("scatter_add_dim0", lambda x, s: x.scatter_add(0, const([[1, 0, 1]]), s) ** 2,
         uniform((2, 3), 442), uniform((1, 3), 443)),
    case("expand_new_dims", lambda x: x.expand(2, 3) * x, uniform((3,), 444)),
    case("unbind_one_piece_used", lambda x: x.unbind(1)[1] ** 2, uniform((2, 3), 445)),
    case("cumsum_3d_dim0", lambda x: x.cumsum(0) ** 2, uniform((2, 2, 2), 446)),
    case("logsumexp_dims_keepdim", lambda x: x.logsumexp((0, 2), keepdim=True), uniform((2, 2, 2), 447, -2, 2)),
    case("std_dims_keepdim", lambda x: x.std((0, 1), keepdim=True), uniform((2, 2, 2), 448)),
    case("norm_p_half", lambda x: x.norm(0.5, dim=1), uniform((2, 3), 449, 0.5, 1.5)),
    case("max_negative_dim", lambda x: x.max(-1)[0] ** 2, spread((2, 3), 450)),
    case("huber_loss_weight", lambda x, y: F.huber_loss(x, y, delta=0.5, weight=const64((2, 3), 451)),
         *apart((2, 3), 452, (-0.5, 0, 0.5))),
    case("binary_cross_entropy_none", lambda p, t: F.binary_cross_entropy(p, t, reduction="none") * p,
         uniform((2, 3), 454, 0.1, 0.9), uniform((2, 3), 455, 0.0, 1.0)),
    case("glu", lambda x: F.glu(x, 1), uniform((2, 4), 456, -2, 2)),
    case("softsign", lambda x: F.softsign(x), spread((2, 3), 457, -2, 2)),
    case("tanhshrink", lambda x: F.tanhshrink(x), uniform((2, 3), 458, -2, 2)),
    case("bilinear", lambda x1, x2, w, b: F.bilinear(x1, x2, w, b),
         uniform((2, 2), 459), uniform((2, 3), 460), uniform((2, 2, 3), 461), uniform((2,), 462)),
    case("cosine_similarity", lambda x, y: F.cosine_similarity(x, y), uniform((2, 3), 463), uniform((2, 3), 464)),
    case("pairwise_distance", lambda x, y: F.pairwise_distance(x, y), uniform((2, 3), 465), uniform((2, 3), 466)),
    case("interpolate_bilinear", lambda x: F.interpolate(x, size=(3, 3), mode="bilinear") ** 2,
         uniform((1, 1, 2, 2), 467)),
    case("interpolate_nearest", lambda x: F.interpolate(x, scale_factor=2) ** 2, uniform((1, 1, 2), 468)),
    case("scaled_dot_product_attention_causal",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
         uniform((1, 3, 2), 469), uniform((1, 3, 2), 470), uniform((1, 3, 2), 471)),
]


def first_derivatives(op):
    """``fn(*xs, v)``: ``op``'s gradients w.r.t. all but its last input ``v``, for upstream
    ``v``, recorded. Ops that only backward formulas record (ConvolutionInputGrad,
    ConvolutionWeightGrad, NormalCdf, LinearMap, IndexPut) are then in the forward graph,
    and gradgradcheck checks their own double backward: a third derivative of ``op``."""
    def fn(*args):
        xs, v = args[:-1], args[-1]
        return grad(op(*xs), xs, v, create_graph=True)
    return fn


DERIVATIVES = [
    case("conv2d_grads", first_derivatives(lambda x, w: F.conv2d(x, w)),
         uniform((1, 1, 3, 3), 370), uniform((1, 1, 2, 2), 371), uniform((1, 1, 2, 2), 372)),
    case("conv2d_strided_grouped_grads",
         first_derivatives(lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2)),
         uniform((1, 2, 3, 3), 373), uniform((2, 1, 2, 2), 374), uniform((1, 2, 2, 2), 375)),
    case("conv_transpose1d_grads", first_derivatives(lambda x, w: F.conv_transpose1d(x, w, stride=2)),
         uniform((1, 2, 3), 376), uniform((2, 1, 2), 377), uniform((1, 1, 6), 378)),
    case("gelu_grads", first_derivatives(F.gelu), uniform((2, 3), 379, -2, 2), uniform((2, 3), 380)),
    case("avg_pool2d_grads", first_derivatives(lambda x: F.avg_pool2d(x, 2) ** 2),
         uniform((1, 1, 4, 4), 381), uniform((1, 1, 2, 2), 382)),
    case("max_pool2d_grads", first_derivatives(lambda x: F.max_pool2d(x, 2) ** 2),
         spread((1, 1, 4, 4), 383), uniform((1, 1, 2, 2), 384)),
    case("embedding_grads", first_derivatives(lambda w: F.embedding(const(EMBED_IDX), w, padding_idx=0) ** 2),
         uniform((5, 2), 385), uniform((2, 3, 2), 386)),
    case("reflect_pad_grads", first_derivatives(lambda x: F.pad(x, (2, 1), mode="reflect") ** 2),
         uniform((1, 2, 3), 387), uniform((1, 2, 6), 388)),
    case("index_grads", first_derivatives(lambda x: x[const(ROWS)] ** 2),
         uniform((3, 2), 389), uniform((3, 2), 390)),
    # the recorded cumprod gradient (division-free, exact at zeros) differentiated twice more
    case("prod_zeros_grads", first_derivatives(lambda x: x.prod(1)),
         with_zeros((3, 4), 391, [1, 2, 4]), uniform((3,), 392)),
    case("cumprod_zeros_grads", first_derivatives(lambda x: x.cumprod(1)),
         with_zeros((3, 4), 393, [1, 2, 4, 7]), uniform((3, 4), 394)),
]
