"""Tiny randomly initialised models built from a config in a temp dir: no decoder LLM or reranker
weights exist on this machine, so their code paths are tested on these."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
)

from distill.readers import bbc_dir

SPECIALS = ["<pad>", "<unk>", "<eos>"]
# The query instruction of an e5-mistral-style decoder teacher (documents get none).
INSTRUCTION = "Instruct: Given a news headline, retrieve passages of its article\nQuery: "


def word_tokenizer(path: Path, documents: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (the Qwen2 / GPT family's kind, so ``AutoTokenizer`` reloads it
    faithfully as the model type's own class) trained on some BBC articles, with ``<eos>`` appended to
    every text and padding on the left, as decoder embedders (e5-mistral, Qwen3-Embedding) do.
    " yes" and " no" are single tokens, for the LLM reranker."""
    texts = [f.read_bytes().decode("latin-1") for f in sorted(bbc_dir().glob("*/*.txt"))[:: max(1, 2225 // documents)]]
    texts += ["Answer: yes", "Answer: no"] * 200
    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    eos = backend.token_to_id("<eos>")
    backend.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", eos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<eos>", padding_side="left")
    tokenizer.save_pretrained(path)
    return tokenizer


def _qwen2_config(vocab_size: int) -> Qwen2Config:
    return Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=0, eos_token_id=2, bos_token_id=2)


def tiny_decoder_embedder(path: Path) -> Path:
    """A Sentence Transformers folder: a 2-layer Qwen2 with last-token pooling and normalisation."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    torch.manual_seed(0)
    backbone = path / "backbone"
    tokenizer = word_tokenizer(backbone)
    Qwen2Model(_qwen2_config(len(tokenizer))).save_pretrained(backbone)
    transformer = Transformer(str(backbone), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="lasttoken"), Normalize()], device="cpu")
    model.save(str(path / "embedder"))
    return path / "embedder"


def tiny_causal_lm(path: Path) -> Path:
    """A 2-layer Qwen2 causal LM with the word tokenizer (for the LLM reranker)."""
    torch.manual_seed(0)
    tokenizer = word_tokenizer(path)
    Qwen2ForCausalLM(_qwen2_config(len(tokenizer))).save_pretrained(path)
    return path


def tiny_cross_encoder(path: Path, tokenizer_from: str, seed: int = 0) -> Path:
    """A 2-layer BERT sequence classifier (one logit) with a real WordPiece tokenizer."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_bert_embedder(path: Path, tokenizer_from: str, hidden_size: int, seed: int = 0) -> Path:
    """A 1-layer BERT with mean pooling as a Sentence Transformers folder: a student of any width."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                        num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=512)
    BertModel(config).save_pretrained(path / "hf")
    tokenizer.save_pretrained(path / "hf")
    SentenceTransformer(modules=[Transformer(str(path / "hf")), Pooling(hidden_size, "mean")]).save(str(path))
    return path
