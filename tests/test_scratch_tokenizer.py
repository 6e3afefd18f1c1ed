"""scratch_tokenizer.train_wordpiece: the vocabulary it builds and how it splits text."""

import unicodedata

from scratch_tokenizer import SPECIAL_TOKENS, train_wordpiece

# Words: 마바 and 가나 twice each (a tie), 사아 once; 다 and 라 are single characters.
TEXTS = ["마바 가나 다", "가나 마바 라 사아"]
CHARS = ["가", "나", "다", "라", "마", "바", "사", "아"]
BASE = SPECIAL_TOKENS + CHARS + [f"##{c}" for c in CHARS]  # 21 tokens


def test_the_vocabulary_is_the_special_tokens_the_characters_then_the_most_frequent_words():
    assert train_wordpiece(TEXTS, vocab_size=100).get_vocab() == {
        token: i for i, token in enumerate(BASE + ["가나", "마바", "사아"])}
    # One place left: the tie between 마바 (seen first) and 가나 goes to the alphabetically first.
    assert train_wordpiece(TEXTS, vocab_size=22).get_vocab() == {token: i for i, token in enumerate(BASE + ["가나"])}
    # Below the characters' own count: every character still gets its pieces, and no word is added.
    assert train_wordpiece(TEXTS, vocab_size=20).get_vocab() == {token: i for i, token in enumerate(BASE)}
    # The order of the texts changes nothing.
    assert train_wordpiece(TEXTS[::-1], vocab_size=22).get_vocab() == train_wordpiece(TEXTS, vocab_size=22).get_vocab()


def test_text_is_split_into_known_pieces_in_bert_form():
    tok = train_wordpiece(TEXTS, vocab_size=22)
    assert tok.convert_ids_to_tokens(tok("가나 마바 사")["input_ids"]) == ["[CLS]", "가나", "마", "##바", "사", "[SEP]"]
    assert tok.convert_ids_to_tokens(tok("가나", "다")["input_ids"]) == ["[CLS]", "가나", "[SEP]", "다", "[SEP]"]
    # Decomposed Hangul (NFD) is composed first; a character never seen is the unknown token.
    assert tok(unicodedata.normalize("NFD", "가나 마바"))["input_ids"] == tok("가나 마바")["input_ids"]
    assert tok.convert_ids_to_tokens(tok("하")["input_ids"]) == ["[CLS]", "[UNK]", "[SEP]"]
    assert tok.pad_token == "[PAD]" and tok.model_input_names == ["input_ids", "attention_mask"]
