"""Token ids of a released checkpoint, mapped explicitly onto ours (:mod:`longdna.vocab`).

The released HyenaDNA and Caduceus checkpoints were trained with character tokenizers that number special tokens
first and the characters after them. Their ``tokenizer_config.json`` lists the special tokens with their ids
(``added_tokens_decoder``); the characters ``A C G T N`` follow the last listed special id. The uploaded
tokenizers of both families give ``[CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6 A=7 ... N=11``
(ours); the Caduceus repository's later tokenizer numbers ``[CLS] [EOS] [SEP] [REF] [MUT] [BOS] [MASK] [PAD]
[RESERVED] [UNK]`` as 0-9 and the characters from 10. Nothing here assumes either: every checkpoint's ids are read
and each of our tokens is looked up by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from longdna import vocab

#: the characters of both families' tokenizers, in id order
CHARACTERS: tuple[str, ...] = tuple(vocab.BASES)


def checkpoint_vocabulary(tokenizer_config: dict[str, Any] | None, where: str) -> dict[str, int]:
    """Token -> id of a checkpoint's tokenizer.

    From ``tokenizer_config.json``: the listed special tokens, the characters numbered from the last listed id + 1,
    and ``[RESERVED]`` at the one unlisted id below the characters (the uploaded tokenizers define it without
    registering it as special). Without a tokenizer config: the layout the released checkpoints were trained with,
    which is ours.
    """
    if tokenizer_config is None or "added_tokens_decoder" not in tokenizer_config:
        return {token: i for i, token in enumerate(vocab.TOKENS)}
    listed = {int(i): entry["content"] for i, entry in tokenizer_config["added_tokens_decoder"].items()}
    first_character = max(listed) + 1
    unlisted = sorted(set(range(first_character)) - set(listed))
    if len(unlisted) == 1 and "[RESERVED]" not in listed.values():
        listed[unlisted[0]] = "[RESERVED]"
    characters = tokenizer_config.get("characters", CHARACTERS)
    ids = {token: i for i, token in listed.items()}
    if len(ids) != len(listed):
        raise ValueError(f"{where}: a special token is listed under two ids: {sorted(listed.items())}")
    ids.update({character: first_character + k for k, character in enumerate(characters)})
    return ids


def token_map(checkpoint_ids: dict[str, int], where: str) -> list[int]:
    """The checkpoint's id of each of our tokens: ``token_map(...)[our_id]``; raises naming a missing token."""
    missing = [token for token in vocab.TOKENS if token not in checkpoint_ids]
    if missing:
        raise ValueError(f"{where}: the checkpoint's tokenizer has no {missing} (it has {sorted(checkpoint_ids)})")
    return [checkpoint_ids[token] for token in vocab.TOKENS]


def check_complement(complement: Sequence[int], ids: list[int], where: str) -> None:
    """A checkpoint's complement map (its id -> its id) must agree with ours once ids are mapped."""
    for ours, theirs in enumerate(ids):
        expected = ids[int(vocab.COMPLEMENT[ours])]
        if theirs >= len(complement) or int(complement[theirs]) != expected:
            raise ValueError(
                f"{where}: complement_map sends {vocab.TOKENS[ours]} (id {theirs}) to id "
                f"{complement[theirs] if theirs < len(complement) else 'nothing'}, expected {expected}"
                f" ({vocab.TOKENS[int(vocab.COMPLEMENT[ours])]})"
            )


def map_embedding_rows(table: Tensor, ids: list[int], rows: int, where: str) -> Tensor:
    """Our embedding table (``rows`` x D) from a checkpoint's: row ``i`` is the checkpoint's row ``ids[i]``. The
    padding rows beyond our vocabulary (no token reads them) take the checkpoint's other rows in order, so that
    a checkpoint in our own id layout comes back unchanged from an export; zeros where there are none."""
    if max(ids) >= table.shape[0]:
        raise ValueError(f"{where}: the embedding has {table.shape[0]} rows, the tokenizer uses id {max(ids)}")
    others = [i for i in range(table.shape[0]) if i not in ids][: rows - len(ids)]
    mapped = table.new_zeros(rows, table.shape[1])
    mapped[: len(ids) + len(others)] = table[ids + others]
    return mapped


def tokenizer_config(model_max_length: int, padding_side: str, tokenizer_class: str) -> dict[str, Any]:
    """The ``tokenizer_config.json`` of an exported checkpoint: our ids, in the uploaded tokenizers' form."""
    specials = {
        str(i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(vocab.SPECIAL_TOKENS)
        if token != "[RESERVED]"
    }
    return {
        "added_tokens_decoder": specials,
        "bos_token": "[BOS]",
        "cls_token": "[CLS]",
        "eos_token": "[SEP]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
        "model_max_length": model_max_length,
        "padding_side": padding_side,
        "tokenizer_class": tokenizer_class,
    }
