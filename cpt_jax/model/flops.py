"""Model FLOPs of the encoder and the contrastive step (pure functions), for MFU.

Counted: every matrix multiply (projections, attention scores and values, MLP) and the N x N
(+ hard-negative) logits; one multiply-add is 2 FLOPs. Not counted: the embedding lookup (a
gather), norms, activations, softmax. Attention is counted over the full seq x seq square even
when causal, since that is what the kernels compute. A training step is forward + backward =
3 x forward ("model FLOPs" as in PaLM's MFU): recomputation from remat or gradient caching is
extra hardware work that MFU deliberately does not credit.
"""

from __future__ import annotations

from cpt_jax.model.config import ModelConfig


def encoder_forward_flops(cfg: ModelConfig, seq: int) -> int:
    """Forward matmul FLOPs of one sequence of `seq` tokens through the encoder, to its pooled output.

    With EOS pooling (and ModelConfig.eos_last_layer) the last layer computes keys and values of
    every token but everything else at the EOS token alone (model/encoder.py): 4 d_model kv_width
    per token, and one token's worth of the rest.
    """
    q_width, kv_width = cfg.num_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    keys_values = 2 * cfg.d_model * 2 * kv_width  # per token
    queries_out_mlp = 2 * (cfg.d_model * 2 * q_width + cfg.d_model * cfg.d_mlp * (3 if cfg.gated_mlp else 2))
    scores_values = 2 * 2 * seq * q_width  # per query: q k^T and the weighted sum of values
    layer = seq * (keys_values + queries_out_mlp + scores_values)
    if cfg.pooling != "eos" or not cfg.eos_last_layer:
        return cfg.num_layers * layer
    return (cfg.num_layers - 1) * layer + seq * keys_values + queries_out_mlp + scores_values


def logits_forward_flops(batch: int, d_model: int, negatives_per_pair: int = 0) -> int:
    """Forward FLOPs of the x->y and y->x logit matrices: [N, N(1 + n)] and [N, N] from [N, d]."""
    return 2 * batch * d_model * (batch * (1 + negatives_per_pair) + batch)


def train_step_flops(cfg: ModelConfig, batch: int, seq_x: int, seq_y: int, negatives_per_pair: int = 0) -> int:
    """Model FLOPs of one training step (forward + backward) on `batch` pairs at padded lengths
    seq_x, seq_y (hard negatives are y-side texts)."""
    encode = batch * (encoder_forward_flops(cfg, seq_x) + (1 + negatives_per_pair) * encoder_forward_flops(cfg, seq_y))
    return 3 * (encode + logits_forward_flops(batch, cfg.d_model, negatives_per_pair))
