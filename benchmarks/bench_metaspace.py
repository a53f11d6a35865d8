"""Meta-space query latency over a zoo of 100,000 records (target: <= 50 ms on this machine).

Entries (group per head: "cosine" = MedNNS, "mlp" = TANS):
- `index_from_features`: `CandidateIndex.query` on a dataset's extractor features [256, 64]: set encoding, one
  [R, D] product (or [R, H] add) over precomputed per-record keys, top-10.
- `query_from_images`: `TrainedMetaSpace.query(task)`: also samples 64 training images of a real task and runs
  the frozen extractor on them (the whole user-facing query).
- `encode_all_per_query`: vectorised, but encodes all 100,000 records at query time (no precomputed keys).
- baseline `naive_per_record_loop`: encode and score one record at a time in Python, timed on 500 records and
  compared per record (`units`).
Answers are checked against each other (the top-10 of the fast path equals that of the full re-encoding).
The meta-space is untrained (latency does not depend on its weights); encodings are random but of the real
widths (config one-hot CONFIG_ENCODING_DIM, functional 256, features 64).
"""

from __future__ import annotations

import pytest
import torch
from conftest import mark_baseline, set_units

import mednns_fast as mf
from mednns_fast import metaspace as ms
from mednns_fast.nas.ofa.config_space import CONFIG_ENCODING_DIM

R = 100_000
NAIVE_R = 500
K = 10


class Setup:
    def __init__(self, head: str) -> None:
        g = torch.Generator().manual_seed(0)
        self.topology = (torch.rand(R, CONFIG_ENCODING_DIM, generator=g) < 0.2).float()
        self.functional = torch.randn(R, 256, generator=g)
        torch.manual_seed(0)
        config = ms.MEDNNS if head == "cosine" else ms.TANS
        self.model = ms.MetaSpace(64, CONFIG_ENCODING_DIM, 256, config).eval()
        refs = [ms.CandidateRef({"row": i}, f"d{i % 11}") for i in range(R)]
        self.index = ms.CandidateIndex(self.model, self.topology, self.functional, refs)
        self.features = torch.randn(256, 64, generator=g)
        extractor = ms.Extractor(ms.FeatureExtractor(64).eval(), {"feature_dim": 64})
        self.space = ms.TrainedMetaSpace(extractor, self.index, images=64)
        self.task = mf.data.build_task("brain_tissue")


@pytest.fixture(scope="module", params=["cosine", "mlp"])
def setup(request):
    # One thread: on the shared 2-core machine a second intra-op thread only adds waiting (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield request.param, Setup(request.param)
    torch.set_num_threads(threads)


def _encode_all(s: Setup) -> list[int]:
    with torch.no_grad():
        emb = s.model.encode_datasets(s.features)
        scores = s.model.predict(emb, s.model.encode_models(s.topology, s.functional))
        if s.model.config.head == "mlp":  # same shortlist rule as the index
            cos = s.model.encode_models(s.topology, s.functional) @ emb
            short = cos.topk(s.model.config.tans_shortlist).indices
            masked = torch.full_like(scores, -float("inf"))
            masked[short] = scores[short]
            scores = masked
        return scores.topk(K).indices.tolist()


def _naive(s: Setup, n: int) -> list[float]:
    with torch.no_grad():
        emb = s.model.encode_datasets(s.features)
        return [float(s.model.predict(emb, s.model.encode_models(s.topology[i:i + 1], s.functional[i:i + 1])))
                for i in range(n)]


def test_index_from_features(benchmark, setup):
    head, s = setup
    benchmark.group = f"query-{head}"
    set_units(benchmark, R)
    top = benchmark(s.index.query, s.features, K)
    assert [r.index for r in top] == _encode_all(s)


def test_query_from_images(benchmark, setup):
    head, s = setup
    benchmark.group = f"query-{head}"
    set_units(benchmark, R)
    top = benchmark(s.space.query, s.task, K)
    assert len(top) == K


def test_encode_all_per_query(benchmark, setup):
    head, s = setup
    benchmark.group = f"query-{head}"
    set_units(benchmark, R)
    benchmark.pedantic(_encode_all, (s,), rounds=5, iterations=1)


def test_naive_per_record_loop(benchmark, setup):
    head, s = setup
    benchmark.group = f"query-{head}"
    mark_baseline(benchmark)
    set_units(benchmark, NAIVE_R)
    scores = benchmark.pedantic(_naive, (s, NAIVE_R), rounds=1, iterations=1)
    fast = s.index.scores(s.model.encode_datasets(s.features))[:NAIVE_R]
    torch.testing.assert_close(torch.tensor(scores), fast, rtol=1e-4, atol=1e-5)
