"""BERT's masked-language-model inputs: special tokens, and the 15 % / 80-10-10 masking.

A masked language model (Devlin et al. 2019) learns by filling in blanks. Of a sequence's tokens,
each non-special one is *selected* with probability p = 0.15; the model must predict the original
token at every selected position, and nowhere else. Of the selected positions

    80 %  become [MASK]             the blank the model learns to fill
    10 %  become a random token     so the model cannot trust an unmasked-looking token blindly
    10 %  stay as they were         so it also learns a representation of real, visible tokens

(at fine-tuning time there is no [MASK] in the input: the 10 + 10 % soften that mismatch).

    ids     [CLS]  t  h  e  _  c  a  t [SEP]
    inputs  [CLS]  t  h [M] _  c  q  t [SEP]      'e' masked, 'a' replaced by a random 'q'
    labels  -100 -100 -100 e -100 -100 a -100 -100   -100 = not selected: no loss there

`mask_tokens` draws a fresh mask every time it is called: *dynamic* masking (RoBERTa, Liu et al.
2019); BERT masked each sequence once when it prepared its data (*static*), so every epoch saw the
same blanks. Which ids are special, and where they sit in a vocabulary, is `SpecialTokens`: the
course's character tokenizer knows no [CLS], so the four specials get the ids after its own.

Left out on purpose: whole-word masking (mask every piece of a word together), span masking
(SpanBERT), and BERT's next-sentence pairs ([SEP] between two segments; RoBERTa dropped them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # the label of a position without a loss: F.cross_entropy's default ignore_index

SPECIAL_NAMES = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class SpecialTokens:
    """The ids of BERT's four special tokens, placed after a base vocabulary of `base_vocab` ids.

        >>> s = SpecialTokens.after(100)
        >>> s.pad, s.cls, s.sep, s.mask, s.vocab_size
        (100, 101, 102, 103, 104)
    """

    pad: int  # filler after a short sequence; attention never looks at it
    cls: int  # first token of every sequence (BERT classifies from its final vector)
    sep: int  # end of a sequence (or of the first of two segments)
    mask: int  # the blank
    vocab_size: int  # the base vocabulary plus the specials: the encoder's V

    @classmethod
    def after(cls, base_vocab: int) -> "SpecialTokens":
        if isinstance(base_vocab, bool) or not isinstance(base_vocab, int) or base_vocab < 1:
            raise ValueError(f"base_vocab={base_vocab!r}: expected a positive integer (the tokenizer's vocab_size)")
        return cls(base_vocab, base_vocab + 1, base_vocab + 2, base_vocab + 3, base_vocab + 4)

    @property
    def ids(self) -> set[int]:
        return {self.pad, self.cls, self.sep, self.mask}

    def name(self, i: int) -> str | None:
        """'[MASK]' for the mask id, and so on; None for an ordinary token."""
        return dict(zip((self.pad, self.cls, self.sep, self.mask), SPECIAL_NAMES)).get(int(i))

    def wrap(self, ids: torch.Tensor) -> torch.Tensor:
        """[CLS] ids [SEP] on each row: ids[B, T] -> [B, T + 2]."""
        B = ids.size(0)
        cls = torch.full((B, 1), self.cls, dtype=ids.dtype, device=ids.device)
        sep = torch.full((B, 1), self.sep, dtype=ids.dtype, device=ids.device)
        return torch.cat([cls, ids, sep], dim=1)  # (B, T + 2)


def mask_tokens(ids: torch.Tensor, vocab_size: int, mask_id: int, special_ids: set[int], p: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: ids[B, T] -> (inputs[B, T], labels[B, T]).

    Each position whose id is not in `special_ids` is selected with probability `p`. Of the
    selected, 80 % become `mask_id`, 10 % a random token drawn uniformly from the non-special ids
    of 0..vocab_size-1, and 10 % keep their id. `labels` hold the original id at the selected
    positions and -100 elsewhere. `ids` is left unchanged; every draw comes from `generator`.
    """
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() != 2:
        raise ValueError(f"ids: expected a LongTensor of shape (B, T), got {getattr(ids, 'dtype', type(ids).__name__)} "
                         f"of shape {tuple(getattr(ids, 'shape', ()))}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p!r}: expected a probability in [0, 1]")
    if mask_id not in special_ids:
        raise ValueError(f"mask_id={mask_id}: expected it among special_ids={sorted(special_ids)} (a [MASK] is never a target)")
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids], dtype=torch.long)  # (V - n_special,)
    if len(ordinary) == 0:
        raise ValueError(f"vocab_size={vocab_size}, special_ids={sorted(special_ids)}: no ordinary token left to draw")
    gen = {"generator": generator} if generator is not None else {}
    special = torch.isin(ids, torch.tensor(sorted(special_ids), dtype=ids.dtype, device=ids.device))  # (B, T)
    selected = (torch.rand(ids.shape, **gen) < p).to(ids.device) & ~special  # (B, T)
    action = torch.rand(ids.shape, **gen).to(ids.device)  # (B, T): < 0.8 mask, < 0.9 random, else keep
    random_ids = ordinary[torch.randint(len(ordinary), ids.shape, **gen)].to(ids.device, ids.dtype)  # (B, T)
    inputs = ids.clone()
    inputs = torch.where(selected & (action < 0.8), torch.full_like(ids, mask_id), inputs)
    inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    return inputs, labels


def mask_all_selected(ids: torch.Tensor, mask_id: int, special_ids: set[int], p: float = 0.15,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation variant: the same selection as `mask_tokens`, but every selected position
    becomes `mask_id` (no random or kept tokens), so accuracy measures filling in true blanks."""
    gen = {"generator": generator} if generator is not None else {}
    special = torch.isin(ids, torch.tensor(sorted(special_ids), dtype=ids.dtype, device=ids.device))
    selected = (torch.rand(ids.shape, **gen) < p).to(ids.device) & ~special  # (B, T)
    inputs = torch.where(selected, torch.full_like(ids, mask_id), ids)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    return inputs, labels
