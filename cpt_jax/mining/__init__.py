"""Hard-negative mining: for every (query, positive) pair, the corpus documents a model ranks
high that are not the positive, written as PairedJsonl for training with DataConfig.num_negatives.

config    MineConfig: model, pairs, corpus, selection rules, chunking, output
model     ModelSpec -> the encoder (a cpt-jax run or a sentence-transformers dir) and its fingerprint
corpus    the pairs (any data-layer source), the corpus (a file streamed in chunks, or the positives),
          text normalisation and keys
cache     embeddings cached per chunk on disk, keyed by model, texts and settings (resumable)
search    exact streaming top-k over the corpus chunks (eval/retrieval.TopKAccumulator)
filters   the selection rules and their counts (MINING_RULES)
output    the PairedJsonl file and its stats, written atomically
miner     mine(config): the steps in order

`python -m cpt_jax.mine` (cpt_jax/cli/mine.py) is the command.
"""

from cpt_jax.mining.config import MineConfig
from cpt_jax.mining.miner import MineResult, mine
from cpt_jax.mining.model import ModelSpec

__all__ = ["MineConfig", "MineResult", "ModelSpec", "mine"]
