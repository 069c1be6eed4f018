"""pytorch/examples' word_language_model shape, on a small generated corpus: a
Dictionary/Corpus tokenizer, batchify and get_batch over bptt windows, an LSTM
language model with tied embedding and decoder weights and hidden states carried
(detached) across batches, and a Transformer language model (nn.TransformerEncoder
with the example's causal float mask and sinusoidal positional encoding buffer);
both trained with clip_grad_norm_ and the example's hand-written SGD update, lr
annealed on validation loss. Same weights and data on distnn and PyTorch: the same
loss at every step, validation losses and final parameters."""

import math

import numpy as np
import pytest

import distnn
from programs.program_check import (assert_same_curve, assert_same_state, modules, requires_torch,
                                    same_start, torch)

EMSIZE, NHID, NLAYERS, NHEAD, BPTT, BATCH, EVAL_BATCH, EPOCHS, CLIP = 16, 16, 2, 2, 8, 4, 2, 2, 0.25
# The example's lr 20 with clip 0.25 takes steps of norm 5: chaotic on a tiny corpus, so
# float32 round-off would grow past any tolerance within a few steps.
LR = 2.0

SUBJECTS, VERBS, OBJECTS = ["the cat", "a dog", "my friend", "the bird"], ["sees", "likes", "follows"], \
    ["the ball", "a tree", "the house", "some food"]


def generated_corpus(lines, seed):
    """Sentences of a tiny grammar, one per line, as the example's train.txt holds."""
    rng = np.random.default_rng(seed)
    return [" ".join([SUBJECTS[rng.integers(4)], VERBS[rng.integers(3)], OBJECTS[rng.integers(4)]])
            + (" and " + OBJECTS[rng.integers(4)] if rng.random() < 0.3 else "") for _ in range(lines)]


def language_model(torch, nn, F):
    """The example's data.py and model.py, written once for either library."""

    class Dictionary:
        def __init__(self):
            self.word2idx, self.idx2word = {}, []

        def add_word(self, word):
            if word not in self.word2idx:
                self.idx2word.append(word)
                self.word2idx[word] = len(self.idx2word) - 1
            return self.word2idx[word]

        def __len__(self):
            return len(self.idx2word)

    class Corpus:
        def __init__(self, train_lines, valid_lines):
            self.dictionary = Dictionary()
            self.train, self.valid = self.tokenize(train_lines), self.tokenize(valid_lines)

        def tokenize(self, lines):
            for line in lines:
                for word in line.split() + ["<eos>"]:
                    self.dictionary.add_word(word)
            idss = [torch.tensor([self.dictionary.word2idx[w] for w in line.split() + ["<eos>"]]).type(torch.int64)
                    for line in lines]
            return torch.cat(idss)

    class RNNModel(nn.Module):
        def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
            super().__init__()
            self.ntoken = ntoken
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)
            if tie_weights:
                self.decoder.weight = self.encoder.weight
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)
            self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
            return F.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            if self.rnn_type == "LSTM":
                return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
            return weight.new_zeros(self.nlayers, bsz, self.nhid)

    class PositionalEncoding(nn.Module):
        def __init__(self, d_model, dropout=0.1, max_len=5000):
            super().__init__()
            self.dropout = nn.Dropout(p=dropout)
            pe = torch.zeros(max_len, d_model)
            position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
            pe[:, 0::2] = torch.sin(position * div_term)
            pe[:, 1::2] = torch.cos(position * div_term)
            self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))

        def forward(self, x):
            return self.dropout(x + self.pe[:x.size(0), :])

    class TransformerModel(nn.Module):
        def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.5):
            super().__init__()
            self.src_mask = None
            self.pos_encoder = PositionalEncoding(ninp, dropout)
            self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout), nlayers)
            self.input_emb = nn.Embedding(ntoken, ninp)
            self.ninp = ninp
            self.decoder = nn.Linear(ninp, ntoken)
            nn.init.uniform_(self.input_emb.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

        @staticmethod
        def _generate_square_subsequent_mask(sz):
            mask = (torch.triu(torch.ones(sz, sz)) == 1).transpose(0, 1)
            return mask.float().masked_fill(mask == 0, float("-inf")).masked_fill(mask == 1, float(0.0))

        def forward(self, src):
            if self.src_mask is None or self.src_mask.size(0) != len(src):
                self.src_mask = self._generate_square_subsequent_mask(len(src)).to(src.device)
            src = self.pos_encoder(self.input_emb(src) * math.sqrt(self.ninp))
            output = self.decoder(self.encoder(src, mask=self.src_mask))
            return F.log_softmax(output, dim=-1)

    return Corpus, RNNModel, TransformerModel


def train_language_model(torch, nn, F, model, corpus, lr=1.0):
    """The example's main.py loop; returns (per-step losses, per-epoch validation losses)."""
    is_transformer = not hasattr(model, "init_hidden")
    ntokens = len(corpus.dictionary)
    criterion = nn.CrossEntropyLoss()

    def batchify(data, bsz):
        nbatch = data.size(0) // bsz
        return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()

    def get_batch(source, i):
        seq_len = min(BPTT, len(source) - 1 - i)
        return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].view(-1)

    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)

    def evaluate(data_source):
        model.eval()
        total_loss = 0.0
        if not is_transformer:
            hidden = model.init_hidden(EVAL_BATCH)
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, BPTT):
                data, targets = get_batch(data_source, i)
                if is_transformer:
                    output = model(data)
                else:
                    output, hidden = model(data, hidden)
                    hidden = repackage_hidden(hidden)
                total_loss += len(data) * criterion(output.view(-1, ntokens), targets).item()
        return total_loss / (len(data_source) - 1)

    train_data, val_data = batchify(corpus.train, BATCH), batchify(corpus.valid, EVAL_BATCH)
    losses, val_losses, best_val_loss = [], [], None
    for _ in range(EPOCHS):
        model.train()
        if not is_transformer:
            hidden = model.init_hidden(BATCH)
        for i in range(0, train_data.size(0) - 1, BPTT):
            data, targets = get_batch(train_data, i)
            model.zero_grad()
            if is_transformer:
                output = model(data)
            else:
                hidden = repackage_hidden(hidden)
                output, hidden = model(data, hidden)
            loss = criterion(output.view(-1, ntokens), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            losses.append(loss.item())
        val_loss = evaluate(val_data)
        val_losses.append(val_loss)
        if best_val_loss is None or val_loss < best_val_loss:
            best_val_loss = val_loss
        else:
            lr /= 4.0
    return losses, val_losses


def build(lib, kind, corpus_lines):
    Corpus, RNNModel, TransformerModel = language_model(lib, lib.nn, lib.nn.functional)
    corpus = Corpus(*corpus_lines)
    ntokens = len(corpus.dictionary)
    if kind == "lstm":
        return RNNModel("LSTM", ntokens, EMSIZE, NHID, NLAYERS, dropout=0.0, tie_weights=True), corpus
    return TransformerModel(ntokens, EMSIZE, NHEAD, NHID * 2, NLAYERS, dropout=0.0), corpus


@requires_torch
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # batch_first=False, as the example
@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_language_model_trains_as_torch(kind):
    corpus_lines = (generated_corpus(40, seed=3), generated_corpus(10, seed=4))
    distnn.manual_seed(5)
    (ours, our_corpus), (theirs, their_corpus) = build(distnn, kind, corpus_lines), build(torch, kind, corpus_lines)
    assert our_corpus.dictionary.idx2word == their_corpus.dictionary.idx2word
    np.testing.assert_array_equal(our_corpus.train.numpy(), their_corpus.train.numpy())
    same_start(ours, theirs)
    if kind == "lstm":
        assert ours.decoder.weight is ours.encoder.weight  # tied, as in the example
    our_losses, our_val = train_language_model(*modules(distnn)[:3], ours, our_corpus)
    their_losses, their_val = train_language_model(*modules(torch)[:3], theirs, their_corpus)

    assert_same_curve(our_losses, their_losses, rtol=1e-4)
    assert_same_curve(our_val, their_val, rtol=1e-4, what="validation loss")
    assert_same_state(ours, theirs, rtol=1e-3, atol=1e-4)
    assert our_val[-1] < math.log(len(our_corpus.dictionary))  # better than a uniform guess
