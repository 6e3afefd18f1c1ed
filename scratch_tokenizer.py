"""Build a small WordPiece tokenizer on the fly, for encoders made from a config (smoke runs, tests)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Sentences -> a BERT-style (NFC, [CLS] ... [SEP]) WordPiece tokenizer with `SPECIAL_TOKENS`.

    The vocabulary is the special tokens, every character seen (bare and as a `##` continuation), then the most
    frequent whole words (ties broken alphabetically) up to `vocab_size`; any word splits into known pieces. Unlike
    the `tokenizers` trainers, whose tie-breaking varies between runs, the result depends only on the texts, so a
    smoke run is reproducible. Saved as `PreTrainedTokenizerFast`, so reloading it gives exactly the same pipeline.
    """
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(unicodedata.normalize("NFC", text))
    )
    chars = sorted({c for word in words for c in word})
    vocab = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    room = max(0, vocab_size - len(vocab))
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:room]

    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )
