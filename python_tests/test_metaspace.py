"""Meta-space: losses on hand-computed cases, encoder invariances, training resume, query on a planted toy zoo,
fold hygiene (no held-out data in its fold), save/load in a new process, fine-tuning."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import mednns_fast as mf
from mednns_fast import metaspace as ms

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only contends

# ---- losses ----------------------------------------------------------------------------------------------


def test_performance_loss_hand_computed():
    loss = ms.performance_loss(torch.tensor([0.5, 0.8]), torch.tensor([0.7, 0.8]))
    assert loss.item() == pytest.approx((0.2**2 + 0.0) / 2)


def test_rank_loss_hand_computed():
    scores = torch.tensor([0.1, 0.3, 0.2, 0.9])
    acc = torch.tensor([0.9, 0.5, 0.7, 0.1])
    groups = torch.tensor([0, 0, 1, 1])
    # group 0: record 0 beats record 1 but scores 0.2 lower; group 1: record 2 beats 3 but scores 0.7 lower.
    assert ms.pairwise_rank_loss(scores, acc, groups).item() == pytest.approx((0.2 + 0.7) / 2)
    assert ms.pairwise_rank_loss(scores, acc, groups, margin=0.1).item() == pytest.approx((0.3 + 0.8) / 2)


def test_rank_loss_zero_on_perfectly_ordered_toy():
    acc = torch.tensor([0.2, 0.9, 0.5, 0.6, 0.1])
    groups = torch.tensor([0, 0, 0, 1, 1])
    scores = acc * 3 - 1  # any increasing function of accuracy
    assert ms.pairwise_rank_loss(scores, acc, groups).item() == 0.0
    assert ms.pairwise_rank_loss(-scores, acc, groups).item() > 0.0
    # Ties and pairs across groups are not pairs.
    assert ms.pairwise_rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5]), torch.tensor([0, 0])) == 0
    assert ms.pairwise_rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.9, 0.1]), torch.tensor([0, 1])) == 0


def test_fid_loss_zero_when_distances_equal_target_and_hand_computed():
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    target = torch.tensor([[0.0, 5.0, 4.0], [5.0, 0.0, 3.0], [4.0, 3.0, 0.0]])
    assert ms.fid_loss(emb, target).item() == pytest.approx(0.0, abs=1e-6)
    shifted = target + 1 - torch.eye(3)
    assert ms.fid_loss(emb, shifted).item() == pytest.approx(1.0, abs=1e-6)
    off = target.clone()
    off[0, 1] = off[1, 0] = 7.0  # one pair off by 2: mean over 3 pairs of (0, 4, 0)
    assert ms.fid_loss(emb, off).item() == pytest.approx(4 / 3, abs=1e-6)


def test_normalised_fid():
    fid = torch.tensor([[0.1, 2.0, 4.0], [2.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    expected = torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.0, 0.25], [1.0, 0.25, 0.0]])
    torch.testing.assert_close(ms.normalised_fid(fid), expected)


def test_contrastive_loss_hand_computed():
    e = torch.eye(2)
    # Each model is its own dataset's twin: positives at cosine 1, negatives at 0, margin 0.2 is met.
    assert ms.contrastive_loss(e, e, torch.tensor([0, 1])).item() == 0.0
    # Swapped positives: every term is relu(0.2 - 0 + 1) = 1.2.
    assert ms.contrastive_loss(e, e, torch.tensor([1, 0])).item() == pytest.approx(1.2)
    # A model at 60 degrees from dataset 0, positive for it; dataset 1's positive at cosine 1.
    m = torch.tensor([[0.5, math.sqrt(3) / 2], [0.0, 1.0]])
    # dataset 0: relu(0.2 - 0.5 + 0) = 0; dataset 1: relu(0.2 - 1 + 0.866) = 0.0660
    # model 0: relu(0.2 - 0.5 + 0.866) = 0.566; model 1: relu(0.2 - 1 + 0) = 0
    want = ((0.0 + (0.2 - 1 + math.sqrt(3) / 2)) / 2 + (0.2 - 0.5 + math.sqrt(3) / 2) / 2) / 2
    assert ms.contrastive_loss(e, m, torch.tensor([0, 1])).item() == pytest.approx(want, abs=1e-6)


def test_losses_reject_bad_shapes():
    with pytest.raises(ValueError, match="accuracy"):
        ms.performance_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="target"):
        ms.fid_loss(torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="loss weight"):
        ms.MetaSpaceConfig(rank=-1.0)


# ---- encoders --------------------------------------------------------------------------------------------


def test_set_encoder_permutation_invariant_and_unit_norm():
    enc = ms.SetEncoder(16, 8)
    x = torch.randn(50, 16)
    perm = torch.randperm(50)
    a, b = enc(x), enc(x[perm])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert a.norm().item() == pytest.approx(1.0, abs=1e-6)
    batched = enc(torch.stack([x, x[perm]]))
    torch.testing.assert_close(batched[0], batched[1], rtol=1e-5, atol=1e-6)


def test_dataset_encoding_invariant_to_image_order():
    extractor = ms.FeatureExtractor(16).eval()
    images = torch.rand(40, 3, 28, 28)
    enc = ms.SetEncoder(16, 8)
    perm = torch.randperm(40)
    a = enc(extractor.features(images))
    b = enc(extractor.features(images[perm]))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_model_encoder_rowwise_and_functional_embedding():
    enc = ms.ModelEncoder(5, 12, 8)
    topo, func = torch.randn(7, 5), torch.randn(7, 12)
    perm = torch.randperm(7)
    torch.testing.assert_close(enc(topo, func)[perm], enc(topo[perm], func[perm]))
    f = ms.functional_embedding(torch.randn(4, 10), 32)  # rows padded to 8 each... cut to 32 // 4 = 8
    assert f.shape == (32,) and f.norm().item() == pytest.approx(1.0, abs=1e-6)
    probe = ms.probe_inputs(4, 3, 28, seed=1)
    torch.testing.assert_close(probe, ms.probe_inputs(4, 3, 28, seed=1))
    assert probe.shape == (4, 3, 28, 28) and 0 <= probe.min() and probe.max() <= 1


# ---- a toy zoo with a planted best model ------------------------------------------------------------------


def _toy_data(seed: int = 0, n_datasets: int = 3, per_dataset: int = 24) -> tuple[ms.MetaSpaceData, list[int]]:
    g = torch.Generator().manual_seed(seed)
    features = [torch.randn(60, 8, generator=g) + 3 * torch.randn(8, generator=g) for _ in range(n_datasets)]
    topology = (torch.rand(n_datasets * per_dataset, 12, generator=g) < 0.5).float()
    functional = torch.randn(n_datasets * per_dataset, 6, generator=g)
    dataset_index = torch.arange(n_datasets).repeat_interleave(per_dataset)
    accuracy = 0.4 + 0.2 * torch.rand(n_datasets * per_dataset, generator=g)
    planted = [d * per_dataset + 5 + d for d in range(n_datasets)]
    accuracy[planted] = 0.95
    fid = ms.dataset_fid(features).float()
    data = ms.MetaSpaceData([f"d{i}" for i in range(n_datasets)], features, fid, topology, functional,
                            dataset_index, accuracy)
    return data, planted


def _index(model, data):
    refs = [ms.CandidateRef({"row": i}, data.datasets[int(d)]) for i, d in enumerate(data.dataset_index)]
    return ms.CandidateIndex(model, data.topology, data.functional, refs)


@pytest.mark.parametrize("preset", ["mednns", "tans"])
def test_query_on_toy_zoo_returns_planted_best(preset):
    # Raw-accuracy targets: the planted model stands out by its value (with per-dataset ranks it is only one
    # rank above the next; test_query_source_follows_the_query covers the presets as they are).
    data, planted = _toy_data()
    config = replace(ms.PRESETS[preset], steps=300, batch_records=72, images_per_set=32, lr=1e-2, target="raw",
                     balanced=False)
    model = ms.train_metaspace(data, config, progress=False).model
    index = _index(model, data)
    for d, name in enumerate(data.datasets):
        others = [n for n in data.datasets if n != name]
        top = index.query(data.features[d], k=3, exclude=others)
        assert top[0].index == planted[d], (preset, name, [r.index for r in top])
        assert top[0].source_dataset == name
        assert top[0].predicted_accuracy >= top[1].predicted_accuracy


def test_training_resumes_exactly():
    data, _ = _toy_data()
    config = replace(ms.MEDNNS, steps=20, batch_records=32, images_per_set=16)
    states = []
    full = ms.train_metaspace(data, config, checkpoint_every=10, on_checkpoint=states.append, progress=False)
    assert [s["step"] for s in states] == [10, 20, 20]
    resumed = ms.train_metaspace(data, config, resume=states[0], progress=False)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
    assert resumed.history == full.history
    with pytest.raises(ValueError, match="different config"):
        ms.train_metaspace(data, replace(config, lr=0.1), resume=states[0], progress=False)


def test_empty_zoo_and_missing_dataset_are_clear_errors():
    data, _ = _toy_data()
    with pytest.raises(ValueError, match="no records for dataset"):
        ms.MetaSpaceData(data.datasets + ["absent"], data.features + [data.features[0]],
                         torch.zeros(4, 4), data.topology, data.functional, data.dataset_index, data.accuracy)
    with pytest.raises(ValueError, match="at least one"):
        ms.MetaSpaceData([], [], torch.zeros(0, 0), torch.zeros(0, 3), torch.zeros(0, 2),
                         torch.zeros(0, dtype=torch.long), torch.zeros(0))
    model = ms.build_metaspace(data, ms.MEDNNS)
    with pytest.raises(ValueError, match="empty"):
        ms.CandidateIndex(model, data.topology[:0], data.functional[:0], [])


# ---- folds: the held-out dataset never reaches its fold -----------------------------------------------------

FOLD_TASKS = ("brain_plane", "lfw_faces", "modality")


@pytest.fixture(scope="module")
def tasks():
    return {n: mf.data.build_task(n) for n in FOLD_TASKS}


def test_fold_tasks_exclude_held_out():
    assert ms.fold_tasks(list(FOLD_TASKS), "lfw_faces") == ["brain_plane", "modality"]
    with pytest.raises(ValueError, match="held_out"):
        ms.fold_tasks(list(FOLD_TASKS), "absent")


def test_extractor_never_sees_held_out_task(tasks):
    kw = dict(seed=3, epochs=1, per_task=48, feature_dim=16, progress=False)
    with_held_out = ms.train_extractor(tasks, exclude="lfw_faces", **kw)
    without = ms.train_extractor({n: tasks[n] for n in ("brain_plane", "modality")}, **kw)
    assert with_held_out.provenance["tasks"] == ["brain_plane", "modality"]
    assert with_held_out.provenance["excluded"] == ["lfw_faces"]
    # The same weights as an extractor trained where the held-out task does not exist at all.
    assert with_held_out.provenance["digest"] == without.provenance["digest"]
    assert with_held_out.provenance["digest"] == ms.state_digest(with_held_out.model)


def test_dataset_features_read_only_training_images(tasks):
    extractor = ms.FeatureExtractor(16).eval()
    only_train = {"train": tasks["modality"]["train"]}  # no val/test to read: a KeyError if it tried
    feats = ms.dataset_features(extractor, only_train, n=32, seed=0)
    assert feats.shape == (32, 16)
    torch.testing.assert_close(feats, ms.dataset_features(extractor, tasks["modality"], n=32, seed=0))


# ---- persistence: a saved meta-space answers the same query in a new process --------------------------------


def test_saved_metaspace_answers_same_query_in_new_process(tmp_path, tasks):
    data, _ = _toy_data()
    extractor = ms.train_extractor(tasks, exclude="lfw_faces", seed=0, epochs=1, per_task=32,
                                   feature_dim=8, progress=False)
    model = ms.train_metaspace(data, replace(ms.MEDNNS, steps=30), progress=False).model
    space = ms.TrainedMetaSpace(extractor, _index(model, data), images=64)
    path = ms.save_metaspace(space, data.topology, data.functional, tmp_path / "space.pt")
    here = [(r.index, round(r.predicted_accuracy, 6)) for r in space.query(tasks["lfw_faces"], k=5)]
    code = ("import torch; torch.set_num_threads(1); import mednns_fast as mf; "
            "from mednns_fast import metaspace as ms; "
            f"s = ms.load_metaspace({str(path)!r}); t = mf.data.build_task('lfw_faces'); "
            "print([(r.index, round(r.predicted_accuracy, 6)) for r in s.query(t, k=5)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(here)


# ---- fine-tuning -------------------------------------------------------------------------------------------


def test_fine_tune_adapts_and_records_curve(tasks):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10))
    result = ms.fine_tune(net, tasks["brain_plane"], epochs=2, max_train=64, max_eval=64, lr=1e-2)
    assert [row["epoch"] for row in result.curve] == [0, 1, 2]
    assert net[0].in_channels == 1 and net[4].out_features == 3  # grey task, 3 classes
    assert all(0 <= row["test_acc"] <= 1 for row in result.curve)
    assert np.isfinite(result.curve[-1]["train_loss"])


# ---- metrics -----------------------------------------------------------------------------------------------


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)  # many ties
    b = a + rng.normal(0, 2, 40)
    assert ms.metrics.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert ms.metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(ms.metrics.spearman([1, 1, 1], [1, 2, 3]))


def test_regret_and_epochs_to_reach():
    assert ms.metrics.regret(0.9, 0.75) == pytest.approx(0.15)
    assert ms.metrics.epochs_to_reach([0.1, 0.5, 0.7, 0.8], 0.7) == 2
    assert ms.metrics.epochs_to_reach([0.1, 0.5], 0.7) is None


# ---- the zoo bridge on a real SQLite zoo -------------------------------------------------------------------


def test_zoo_bridge_errors_and_lazy_weights(tmp_path):
    from mednns_fast.metaspace import from_zoo as zoo_data
    from mednns_fast.nas.ofa.config_space import max_config, min_config
    from mednns_fast.nas.ofa.elastic_resnet import ElasticResNet

    zoo = ms.Zoo(f"sqlite:///{tmp_path / 'zoo.db'}")
    with pytest.raises(ValueError, match="empty"):
        zoo_data.zoo_records(zoo, ["brain_plane"])
    torch.manual_seed(0)
    net = ElasticResNet(1, 3, stage_channels=(8, 8, 16, 16)).eval()
    digest = ms.save_supernet(net, tmp_path / "brain_plane.pt")
    zoo.register_supernet("brain_plane", digest, str(tmp_path / "brain_plane.pt"))
    zoo.add([ms.ZooRecord("brain_plane", c, 1, 1, 0.5, 1.0, 0.5, 1.0, digest) for c in (max_config(), min_config())])
    with pytest.raises(ValueError, match="no records for \\['modality'\\]"):
        zoo_data.zoo_records(zoo, ["brain_plane", "modality"])
    records = zoo_data.zoo_records(zoo, ["brain_plane"])["brain_plane"]
    refs = zoo_data.candidate_refs(zoo, records)
    handle = refs[1].weights
    assert handle.dataset == "brain_plane" and handle.digest == digest  # a reference: nothing loaded yet
    sub = handle.load()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(sub(x), net(x, handle.config), rtol=1e-4, atol=1e-5)
    func = zoo_data.functional_embeddings(records, {"brain_plane": net})
    assert func.shape == (2, zoo_data.FUNCTIONAL_DIM) and not torch.allclose(func[0], func[1])
    assert zoo_data.topology_encodings(records).shape[0] == 2


def test_lodo_summary_hand_computed():
    from mednns_fast.evaluation.lodo import summarise

    def fold(name, med, pooled, reg):
        return {"held_out": name, "seeds": [{"seed": 0, "methods": {"mednns": {"curve": med, "regret": reg,
                                                                             "spearman": 0.5}},
                                            "baselines": {"pooled_pretrained": {"curve": pooled}}}]}

    folds = [fold("a", [0.2, 0.6, 0.8], [0.3, 0.5, 0.7], 0.1), fold("b", [0.4, 0.5, 0.5], [0.3, 0.6, 0.6], 0.3)]
    s = summarise(folds, [0])
    assert s["final_test_acc"]["mednns"]["mean"] == pytest.approx(0.65)
    assert s["final_test_acc"]["pooled_pretrained"]["mean"] == pytest.approx(0.65)
    assert s["mednns_minus_pooled_points"]["mean"] == pytest.approx(0.0)
    assert s["regret"]["mednns"]["mean"] == pytest.approx(0.2)
    # fold a: mednns reaches 0.7 at epoch 2; fold b: never reaches 0.6
    assert s["epochs_to_pooled_final"]["mednns"]["mean"] == pytest.approx(2.0)
    assert s["epochs_to_pooled_final"]["mednns"]["reached_fraction"] == pytest.approx(0.5)
    assert s["epochs_to_pooled_final"]["pooled_pretrained"]["mean"] == pytest.approx(1.5)


def _family_zoo(seed: int = 0, per_source: int = 12):
    """Two families of two datasets each (features near one of two centres); a model transfers well within its
    source's family and badly across: transfer pairs (source != target) only, as the zoo's transfer labels."""
    g = torch.Generator().manual_seed(seed)
    centres = [4 * torch.randn(8, generator=g) for _ in range(2)]
    family = [0, 0, 1, 1]
    features = [torch.randn(60, 8, generator=g) + centres[f] + 0.5 * torch.randn(8, generator=g) for f in family]
    source_code = [torch.randn(6, generator=g) for _ in family]
    models = [(k, (torch.rand(12, generator=g) < 0.5).float(), source_code[k] + 0.3 * torch.randn(6, generator=g))
              for k in range(4) for _ in range(per_source)]
    topo, func, index, acc = [], [], [], []
    for j in range(4):
        for k, t, f in models:
            if k == j:
                continue
            topo.append(t)
            func.append(f)
            index.append(j)
            acc.append((0.8 if family[k] == family[j] else 0.4) + 0.1 * float(torch.rand((), generator=g)))
    data = ms.MetaSpaceData([f"d{i}" for i in range(4)], features, ms.dataset_fid(features).float(), torch.stack(topo),
                            torch.stack(func), torch.tensor(index), torch.tensor(acc))
    candidates = (torch.stack([m[1] for m in models]), torch.stack([m[2] for m in models]),
                  [ms.CandidateRef({"row": i}, f"d{m[0]}") for i, m in enumerate(models)])
    return data, candidates, centres, family


@pytest.mark.parametrize("preset", ["mednns", "mednns_two_stage", "tans"])
def test_query_source_follows_the_query(preset):
    """A planted zoo whose sources differ: a new dataset from family A retrieves a family-A source, one from
    family B a family-B source."""
    data, (topo, func, refs), centres, family = _family_zoo()
    config = replace(ms.PRESETS[preset], steps=300, batch_records=64, images_per_set=32, lr=1e-2)
    model = ms.train_metaspace(data, config, progress=False).model
    with torch.no_grad():
        emb = {n: model.encode_datasets(data.features[i]) for i, n in enumerate(data.datasets)}
    index = ms.CandidateIndex(model, topo, func, refs, source_embeddings=emb)
    g = torch.Generator().manual_seed(7)
    for f in (0, 1):
        query = torch.randn(60, 8, generator=g) + centres[f] + 0.5 * torch.randn(8, generator=g)
        top = index.query(query, k=5)
        families = {family[int(r.source_dataset[1:])] for r in top}
        assert families == {f}, (preset, f, [r.source_dataset for r in top])


def test_two_stage_needs_source_embeddings():
    data, (topo, func, refs), _, _ = _family_zoo(per_source=2)
    config = replace(ms.PRESETS["mednns_two_stage"], steps=2, batch_records=8, images_per_set=8)
    model = ms.train_metaspace(data, config, progress=False).model
    with pytest.raises(ValueError, match="source_embeddings"):
        ms.CandidateIndex(model, topo, func, refs)


def test_per_dataset_rank_and_fid_spread():
    from mednns_fast.metaspace import losses

    acc = torch.tensor([0.2, 0.9, 0.5, 0.5, 0.1, 0.3])
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    torch.testing.assert_close(losses.per_dataset_rank(acc, groups), torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 0.5]))
    fid = torch.tensor([[0.0, 1.0, 100.0], [1.0, 0.0, 10.0], [100.0, 10.0, 0.0]])
    t = losses.fid_targets(fid, "spread")
    assert t[0, 1].item() == pytest.approx(0.3) and t[0, 2].item() == pytest.approx(1.6)
    assert t[1, 2].item() == pytest.approx(0.3 + 1.3 * 0.5) and torch.all(t.diagonal() == 0)
    assert losses.fid_targets(fid, "max")[0, 2].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mode"):
        losses.fid_targets(fid, "log")


def test_balanced_batches_cover_datasets_evenly():
    from mednns_fast.metaspace.training import BalancedSampler

    groups = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    batch = BalancedSampler(groups).sample(3000, torch.Generator().manual_seed(0))
    counts = torch.bincount(groups[batch], minlength=3).float() / 3000
    assert torch.all((counts - 1 / 3).abs() < 0.05), counts
