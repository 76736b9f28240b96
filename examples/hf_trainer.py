"""A tiny Hugging Face model (built from a config: no download) under ``Trainer``, with the multilens callback.

    python examples/hf_trainer.py               # writes runs/example-hf/report.html

The task is synthetic sequence classification: does the sequence contain more tokens from the
upper half of the vocabulary than the lower half.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from multilens.integrations.transformers import MultilensCallback


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 256, length: int = 12, vocab: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, vocab, (n, length), generator=g)
        self.labels = ((self.ids >= vocab // 2).float().mean(1) > 0.5).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def main(steps: int = 40, every: int = 20, out: str = "runs/example-hf", profile: str = "smoke") -> object:
    cfg = BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
        attn_implementation="eager",  # Hessian-vector products need double backward; CPU SDPA has none
    )
    model = BertForSequenceClassification(cfg)
    ds = Tokens()
    cb = MultilensCallback(
        data=(ds.ids[:64], ds.labels[:64]), lenses=("curvature",), every=every, out=out, profile=profile
    )
    args = TrainingArguments(
        output_dir=f"{out}/trainer",
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()
    return cb.report


if __name__ == "__main__":
    print(main().paths["report"])
