"""llmlab.nn.pooling: the last real token under right and left padding; the mean over real tokens."""

from __future__ import annotations

import pytest
import torch

from llmlab.nn.pooling import last_token_pool, mean_pool


def test_last_token_pool_right_left_and_no_padding():
    h = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    left = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(last_token_pool(h, right), torch.stack([h[0, 2], h[1, 4]]))
    assert torch.equal(last_token_pool(h, left), torch.stack([h[0, 4], h[1, 4]]))
    with pytest.raises(ValueError, match="is_token: a row has no real token"):
        last_token_pool(h, torch.zeros(2, 5, dtype=torch.bool))


def test_mean_pool_ignores_padding():
    h = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0))
    is_token = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    out = mean_pool(h, is_token)
    torch.testing.assert_close(out[0], h[0, :2].mean(0))
    torch.testing.assert_close(out[1], h[1].mean(0))
    assert torch.equal(out[2], torch.zeros(6))
    with pytest.raises(ValueError, match=r"is_token: expected a BoolTensor of shape \(3, 4\)"):
        mean_pool(h, is_token.long())
