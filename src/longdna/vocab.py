"""The single-nucleotide vocabulary every stage shares.

Ids are those of the released HyenaDNA checkpoints: seven special tokens, then the bases::

    [CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6  A=7 C=8 G=9 T=10 N=11

Encoding rules (one lookup table, no per-base Python):

* ``A C G T N`` in either case map to their ids; lower case (soft-masked repeats) maps to the same id as
  upper case, the soft mask being kept as a separate track by the tokenizer.
* The other IUPAC ambiguity codes ``R Y S W K M B D H V`` map to ``N``; ``U`` (uracil) maps to ``T``.
* Anything else (gaps ``-``/``.``, digits, ``*``, ...) is an error that names the position.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

SPECIAL_TOKENS: tuple[str, ...] = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
BASES = "ACGTN"
CLS, SEP, BOS, MASK, PAD, RESERVED, UNK = range(7)
A, C, G, T, N = range(7, 12)
VOCAB_SIZE = 12
TOKENS: tuple[str, ...] = SPECIAL_TOKENS + tuple(BASES)

#: marks a byte that is not a valid IUPAC nucleotide code in ENCODE_TABLE
INVALID = 255

IUPAC_AMBIGUOUS = "RYSWKMBDHV"


def _build_encode_table() -> np.ndarray:
    table = np.full(256, INVALID, dtype=np.uint8)
    for base, token in zip(BASES, range(A, N + 1)):
        table[ord(base)] = table[ord(base.lower())] = token
    for code in IUPAC_AMBIGUOUS:
        table[ord(code)] = table[ord(code.lower())] = N
    table[ord("U")] = table[ord("u")] = T
    return table


ENCODE_TABLE = _build_encode_table()
DECODE_TABLE = np.frombuffer(b"".join(b"?" if len(t) > 1 else t.encode() for t in TOKENS), dtype=np.uint8)
COMPLEMENT = np.arange(VOCAB_SIZE, dtype=np.int64)
COMPLEMENT[[A, C, G, T]] = [T, G, C, A]


class InvalidSequenceError(ValueError):
    """A sequence holds a character that is not an IUPAC nucleotide code."""


def encode(sequence: str | bytes | np.ndarray, *, where: str = "sequence") -> np.ndarray:
    """Token ids (uint8) of a nucleotide string; raises naming ``where`` and the first bad position."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", errors="replace")
    raw = np.frombuffer(sequence, dtype=np.uint8) if isinstance(sequence, (bytes, bytearray)) else sequence
    ids = ENCODE_TABLE[raw]
    bad = np.flatnonzero(ids == INVALID)
    if bad.size:
        pos = int(bad[0])
        raise InvalidSequenceError(
            f"{where}: character {chr(raw[pos])!r} at position {pos + 1} is not an IUPAC nucleotide code"
            f" ({bad.size} invalid characters in total)"
        )
    return ids


def soft_mask(sequence: bytes | np.ndarray) -> np.ndarray:
    """Boolean track, True where the FASTA sequence is lower case (soft-masked)."""
    raw = np.frombuffer(sequence, dtype=np.uint8) if isinstance(sequence, (bytes, bytearray)) else sequence
    return raw >= ord("a")


def _is_tensor(ids: Any) -> bool:
    """Whether ``ids`` is a torch tensor, without importing torch: this module serves the data stages, whose
    environment has no PyTorch, and a tensor can only exist once something else has imported torch."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(ids, torch_module.Tensor)


def decode(ids: np.ndarray | torch.Tensor) -> str:
    """Nucleotide string of token ids; special tokens decode to ``?``."""
    if _is_tensor(ids):
        ids = ids.cpu().numpy()
    return DECODE_TABLE[np.asarray(ids, dtype=np.int64)].tobytes().decode("ascii")


ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def reverse_complement(ids: ArrayT) -> ArrayT:
    """Reverse complement of token ids along the last axis (special tokens map to themselves)."""
    if _is_tensor(ids):
        table = ids.new_tensor(COMPLEMENT, dtype=ids.dtype)
        return table[ids.long()].flip(-1)
    return COMPLEMENT[ids].astype(ids.dtype)[..., ::-1]


def tokenizer_description() -> dict:
    """The vocabulary as written next to every checkpoint (``tokenizer.json``)."""
    return {
        "type": "single-nucleotide",
        "tokens": {token: i for i, token in enumerate(TOKENS)},
        "vocab_size": VOCAB_SIZE,
        "lower_case": "same id as upper case (soft mask kept as a separate track)",
        "iupac_ambiguity_codes": f"{IUPAC_AMBIGUOUS} -> N, U -> T",
        "complement": {TOKENS[i]: TOKENS[int(j)] for i, j in enumerate(COMPLEMENT)},
    }
