from anneuron.tokenizer import GPT2_VOCAB_SIZE, gpt2_tokenizer, has_gpt2_vocab, single_token


def test_known_ids():
    tok = gpt2_tokenizer()
    assert len(tok) == GPT2_VOCAB_SIZE
    assert single_token(tok, " an") == 281
    assert single_token(tok, " a") == 257
    assert single_token(tok, "i") == 72
    assert tok.encode("Hello world", add_special_tokens=False) == [15496, 995]
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 50256 == tok.bos_token_id == tok.eos_token_id
    assert single_token(tok, " ancient history") is None


def test_folder_vocab_detection(tiny_dir, tmp_path):
    assert has_gpt2_vocab(tiny_dir)
    assert not has_gpt2_vocab(tmp_path)
