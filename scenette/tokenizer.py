"""Scenette's word-level tokenizer, built offline with the `tokenizers` library.

Each word is one token, with its leading space kept as part of the token (" red" and "red" are two
entries), each punctuation mark is one token and other whitespace characters are single tokens;
decoding concatenates the pieces, so text round-trips exactly. The vocabulary is every piece of
every prompt and answer the benchmark can produce, in sorted order after the special tokens.
"""

from __future__ import annotations

import transformers  # its classes load on first use, so `--help` stays fast
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from .prompt import ANSWER_INSTRUCTION, END_OF_TURN, IMAGE_TOKEN, conversation, follow_up, question_text
from .questions import all_question_texts, answer_vocabulary

PAD, UNK, BOS = "<pad>", "<unk>", "<s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, END_OF_TURN, IMAGE_TOKEN]
WORD_PATTERN = r" ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]|\s"


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")


def corpus() -> list[str]:
    """Every text the tokenizer must cover without <unk>."""
    texts = [conversation(question_text(q)) for q in all_question_texts()]
    texts += [follow_up(question_text(q)) for q in all_question_texts()]
    texts += [f" {a}" for a in answer_vocabulary()] + [ANSWER_INSTRUCTION]
    return texts


def build_tokenizer() -> transformers.PreTrainedTokenizerFast:
    pieces = set()
    splitter = _pre_tokenizer()
    for text in corpus():
        for segment in text.split(IMAGE_TOKEN):
            pieces.update(piece for piece, _ in splitter.pre_tokenize_str(segment))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(pieces - set(SPECIAL_TOKENS)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = splitter
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=END_OF_TURN,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
    )
