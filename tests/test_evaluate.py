"""Evaluation: data loading, the statistics, and the comparison, checked against onnxruntime run directly."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

from workbench.core.errors import Cancelled, CorruptFile, FileProblem, ModelNotFound, UnsupportedFormat
from workbench.core.evaluate import metrics
from workbench.core.evaluate.compare import compare, decide_task, predict
from workbench.core.evaluate.datasets import EvalData, load_data, load_npz, onnx_document, sample_data
from workbench.core.evaluate.latency import measure_alternating
from workbench.core.jobs import Job, Progress
from workbench.resources import sample_model

SAMPLE = sample_model()
RUNS = 3  # latency runs per model: timing is not what these tests check


def direct_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    """The model's first output, run the plainest way: one onnxruntime call on all samples."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def rewrite_weights(src: Path, dst: Path, change) -> Path:  # type: ignore[no-untyped-def]
    model = onnx.load(src)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(change(init.name, values).astype(np.float32), init.name))
    onnx.save(model, dst)
    return dst


def zero_first_filter(name: str, w: np.ndarray) -> np.ndarray:
    if w.ndim == 4 and name.startswith("features.0"):
        w = w.copy()
        w[0] = 0
    return w


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("variants")
    return {
        "fp16": rewrite_weights(SAMPLE, out / "fp16.onnx", lambda _, w: w.astype(np.float16)),
        "zeroed": rewrite_weights(SAMPLE, out / "zeroed.onnx", zero_first_filter),
    }


def table_model(path: Path, features: int = 4, classes: int = 3, output: str = "scores") -> Path:
    """[batch, features] -> [batch, classes] through one MatMul: class k scores feature k highest."""
    w = np.eye(features, classes, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], [output])], "table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def nhwc_model(path: Path) -> Path:
    """[batch, 8, 8, 3] RGB images -> 3 scores (the mean of each colour channel)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["img", "axes"], ["scores"], keepdims=0)], "nhwc",
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


# --- honesty: the figures are what onnxruntime gives ---------------------------------------------------------


def test_compare_reports_the_accuracy_onnxruntime_gives(variants: dict[str, Path]) -> None:
    data = sample_data()
    x, y = data.inputs["image"], data.labels
    right = {name: direct_outputs(path, x).argmax(1) == y for name, path in [("original", SAMPLE), *variants.items()]}
    c = compare(SAMPLE, [variants["fp16"], variants["zeroed"]], data, latency_runs=RUNS)

    assert c.task == "classification" and c.labelled and c.samples == 450
    assert c.original.correct == int(right["original"].sum()) == 443  # the 98.44 % in sample.json
    assert c.original.accuracy == pytest.approx(443 / 450)
    for result, name in zip(c.variants, variants):
        assert result.correct == int(right[name].sum())
        assert result.mcnemar_b == int(np.sum(right["original"] & ~right[name]))
        assert result.mcnemar_c == int(np.sum(~right["original"] & right[name]))
        assert result.accuracy_drop == pytest.approx(right["original"].mean() - right[name].mean())
        lo, hi = result.drop_ci  # type: ignore[misc]
        assert lo <= result.accuracy_drop <= hi
        assert result.latency is not None and result.latency.runs == RUNS
    zeroed = c.variants[1]
    assert zeroed.mcnemar_b + zeroed.mcnemar_c > 0, "zeroing a filter should change some answers"
    assert c.variants[0].sqnr_db > 40  # fp16-rounded weights stay close


def test_predict_matches_one_plain_onnxruntime_call() -> None:
    data = sample_data()
    ours = predict(SAMPLE, data, batch_size=7)  # batches that do not divide 450
    np.testing.assert_allclose(ours, direct_outputs(SAMPLE, data.inputs["image"]), rtol=1e-5, atol=1e-6)


def test_a_model_compared_with_itself_agrees_completely() -> None:
    labelled = sample_data().subset(100)
    c = compare(SAMPLE, [SAMPLE], EvalData(labelled.inputs, None, "100 digits"), latency_runs=RUNS)
    same = c.variants[0]
    assert c.task == "classification" and not c.labelled
    assert same.agreement == 1.0 and same.flips == 0 and same.sqnr_db == math.inf
    assert same.cosine_mean == pytest.approx(1.0) and same.accuracy is None
    assert same.name == "digits_cnn.onnx #2" and c.original.name == "digits_cnn.onnx"
    assert "Its outputs are identical to the original's." in same.verdicts
    assert any("Only 100 samples" in w for w in c.warnings)
    as_json = json.loads(json.dumps(c.to_dict()))  # plain JSON: no NaN or Infinity
    assert as_json["models"][1]["outputs_identical"] is True and as_json["models"][1]["sqnr_db"] is None

    c = compare(SAMPLE, [SAMPLE], labelled, latency_runs=0)
    same = c.variants[0]
    assert same.accuracy_drop == 0 and (same.mcnemar_b, same.mcnemar_c, same.mcnemar_p) == (0, 0, 1.0)
    assert same.latency is None and c.latency_runs == 0
    assert "the same as the original" in same.verdicts[0]


def test_sizes_include_external_data_and_fixed_batch_models_run(corpus: Path) -> None:
    external = corpus / "external" / "model.onnx"
    data = load_data(None, external)  # [2, 1, 8, 8] float: the digits fit
    assert len(data) == 450 and "bundled digits" in data.notes[0]
    c = compare(external, [corpus / "embedded.onnx"], data, latency_runs=RUNS, latency_batch=1)
    files = [external, corpus / "external" / "model.onnx.data"]
    assert c.original.size_bytes == sum(f.stat().st_size for f in files)
    assert list(c.original.files) == files
    assert c.original.gzip_size_bytes == len(gzip.compress(b"".join(f.read_bytes() for f in files), 6, mtime=0))
    assert c.variants[0].size_bytes == (corpus / "embedded.onnx").stat().st_size
    assert c.variants[0].agreement == 1.0  # the same weights, stored two ways
    assert c.latency_batch == 2  # the model's fixed batch size wins over latency_batch=1
    expected = direct_outputs(external, next(iter(data.inputs.values()))[:2])
    np.testing.assert_allclose(predict(external, data.subset(3))[:2], expected, rtol=1e-5, atol=1e-6)


def test_synthetic_inputs_are_flagged(tmp_path: Path) -> None:
    model = table_model(tmp_path / "table.onnx")
    data = load_data(None, model)
    assert data.synthetic and data.labels is None and data.inputs["x"].shape == (64, 4)
    c = compare(model, [model], data, latency_runs=RUNS)
    assert c.synthetic and any("random inputs" in w for w in c.warnings)
    assert c.variants[0].agreement == 1.0


def test_embedding_outputs_are_compared_by_cosine_only(tmp_path: Path) -> None:
    model = table_model(tmp_path / "embed.onnx", features=4, classes=4)
    c = compare(model, [model], load_data(None, model), latency_runs=0, task="embedding")
    assert c.task == "embedding" and c.variants[0].agreement is None and c.variants[0].cosine_mean == 1.0

    named = onnx_document(table_model(tmp_path / "named.onnx", output="sentence_embedding"))
    plain = onnx_document(model)
    scores = np.zeros((3, 384), np.float32)
    assert decide_task("auto", named, scores, labelled=False) == "embedding"  # the name says so
    assert decide_task("auto", plain, scores, labelled=False) == "classification"
    assert decide_task("auto", plain, np.zeros((3, 5000), np.float32), labelled=False) == "embedding"  # too wide
    assert decide_task("auto", named, scores, labelled=True) == "classification"  # labels say so
    assert decide_task("auto", plain, np.zeros((3, 7, 2), np.float32), labelled=True) == "embedding"
    assert decide_task("auto", plain, np.zeros(3, np.int64), labelled=True) == "classification"  # class ids


def test_comparison_reports_progress_and_can_be_cancelled_midway() -> None:
    seen: list[float] = []
    compare(SAMPLE, [SAMPLE], sample_data(), job=Job(lambda p: seen.append(p.fraction or 0.0), min_interval=0),
            latency_runs=RUNS, batch_size=50)
    assert seen == sorted(seen) and seen[-1] == 1.0

    def cancel_when_running(p: Progress) -> None:
        if p.message.startswith("Running"):
            job.cancel()

    job = Job(cancel_when_running, min_interval=0)
    with pytest.raises(Cancelled):
        compare(SAMPLE, [SAMPLE], sample_data(), job=job, batch_size=50)
    assert job.last is not None and job.last.message.startswith("Running")


def test_latency_alternates_and_reports_every_model() -> None:
    order: list[str] = []
    stats = measure_alternating([lambda: order.append("a"), lambda: order.append("b")], runs=4, warmup=1)
    assert [s.runs for s in stats] == [4, 4]
    assert order[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # after warm-up, the starting model rotates


# --- data loading -------------------------------------------------------------------------------------------


def test_image_folder_is_converted_to_the_model_input(tmp_path: Path) -> None:
    from PIL import Image

    digits = sample_data()
    folder = tmp_path / "images"
    keep = np.flatnonzero(digits.labels < 3)[:12]
    for i in keep:
        label = int(digits.labels[i])
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        pixels = np.round(digits.inputs["image"][i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / str(label) / f"{i:04d}.png")
    Image.new("RGB", (16, 16), (255, 0, 0)).save(folder / "2" / "zz_red.png")  # RGB, larger: converted and resized
    (folder / "2" / "notes.txt").write_text("not an image")

    data = load_data(folder, SAMPLE)
    x = data.inputs["image"]
    assert x.shape == (13, 1, 8, 8) and x.dtype == np.float32 and data.labels is not None
    order = sorted(keep, key=lambda i: (int(digits.labels[i]), i))
    np.testing.assert_allclose(x[:12], digits.inputs["image"][order], atol=0.5 / 255 + 1e-6)
    assert x[12].min() == x[12].max() == pytest.approx(76 / 255)  # ITU-R 601 grey of pure red
    assert list(data.labels) == [int(digits.labels[i]) for i in order] + [2]
    assert "scaled from 0..255 to 0..1" in data.notes[0] and "0 = 0, 1 = 1, 2 = 2" in data.notes[1]

    c = compare(SAMPLE, [SAMPLE], data, latency_runs=0)
    direct = direct_outputs(SAMPLE, x).argmax(1) == data.labels
    assert c.original.correct == int(direct.sum())


def test_image_folder_channels_last_rgb(tmp_path: Path) -> None:
    from PIL import Image

    model = nhwc_model(tmp_path / "nhwc.onnx")
    for k, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        (tmp_path / "imgs" / f"c{k}").mkdir(parents=True)
        Image.new("RGB", (4, 4), colour).save(tmp_path / "imgs" / f"c{k}" / "a.png")
    data = load_data(tmp_path / "imgs", model)
    assert data.inputs["img"].shape == (3, 8, 8, 3)
    c = compare(model, [model], data, latency_runs=0)
    assert c.original.accuracy == 1.0


def test_csv_table_with_and_without_labels(tmp_path: Path) -> None:
    model = table_model(tmp_path / "table.onnx")
    rows = np.array([[3, 0, 0, 1, 0], [0, 2, 1, 0, 1], [0, 0, 5, 0, 2], [1, 0, 0, 0, 1]], dtype=float)
    labelled = tmp_path / "rows.csv"
    labelled.write_text("a,b,c,d,Label\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows) + "\n")
    data = load_data(labelled, model)
    np.testing.assert_array_equal(data.inputs["x"], rows[:, :4].astype(np.float32))
    assert list(data.labels) == [0, 1, 2, 1]
    c = compare(model, [model], data, latency_runs=0)
    assert c.original.correct == int(np.sum(rows[:, :4].argmax(1) == rows[:, 4])) == 3

    plain = tmp_path / "plain.csv"
    plain.write_text("1;2;3;4\n5;6;7;8\n")  # no header, other delimiter: all features, no labels
    data = load_data(plain, model)
    assert data.labels is None and data.inputs["x"].shape == (2, 4) and "no label column" in data.notes[0]


@pytest.mark.parametrize(("content", "error", "words"), [
    ("a,b,c,label\n1,2,3,0\n", FileProblem, "3 feature columns besides the label column label"),
    ("a,b,c,d,y\n1,2,x,4,0\n", CorruptFile, "row 2, column c holds 'x'"),
    ("a,b,c,d,target\n1,2,3,4,3\n", FileProblem, "only 3 classes"),
    ("a,b,c,d,label\n1,2,3,4,0.5\n", CorruptFile, "fractions"),
    ("a,b,c,d\n1,2,3\n", CorruptFile, "row 2 has 3 values"),
])
def test_bad_csv_says_what_is_wrong(tmp_path: Path, content: str, error: type, words: str) -> None:
    model = table_model(tmp_path / "table.onnx")
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(error) as info:
        load_data(bad, model)
    assert words in str(info.value) and "bad.csv" in str(info.value)


def test_bad_data_and_mismatched_models(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ModelNotFound, match="no data file or folder"):
        load_data(tmp_path / "missing.npz", SAMPLE)
    wrong = tmp_path / "flat.npz"
    np.savez(wrong, x=np.zeros((5, 64), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(FileProblem, match=r"digits_cnn.onnx cannot run on flat.npz .*needs shape \[batch, 1, 8, 8\]"):
        load_data(wrong, SAMPLE)
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((2, 1, 8, 8), np.float32), y=np.array([0, 10]))
    with pytest.raises(FileProblem, match="labels go up to 10, but digits_cnn.onnx has only 10 classes"):
        load_data(labels, SAMPLE)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FileProblem, match="junk.npz is not a readable .npz"):
        load_data(tmp_path / "junk.npz", SAMPLE)
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(UnsupportedFormat, match="data.json"):
        load_data(tmp_path / "data.json", SAMPLE)
    with pytest.raises(UnsupportedFormat, match="is a PyTorch state_dict.*Export it to ONNX first"):
        load_data(None, corpus / "state_dict.pt")
    with pytest.raises(FileProblem, match="table.onnx cannot run on the bundled digits"):
        compare(SAMPLE, [table_model(tmp_path / "table.onnx")], sample_data(), latency_runs=0)
    named = tmp_path / "named.npz"
    np.savez(named, image=np.zeros((3, 1, 8, 8)))  # named after the input, float64: converted
    data = load_data(named, SAMPLE)
    assert data.inputs["image"].dtype == np.float32 and data.labels is None


def test_load_npz_keeps_its_contract() -> None:
    from workbench.resources import sample_dir

    data = load_npz(sample_dir() / "digits_test.npz", "image")
    assert data.inputs["image"].shape == (450, 1, 8, 8) and data.labels.dtype == np.int64


# --- the statistics, against values worked by hand ---------------------------------------------------------


def test_wilson_interval() -> None:
    # 8 of 10: p = 0.8, z^2 = 3.8415; centre = (0.8 + 0.19207) / 1.38415; half = z * sqrt(0.016 + 0.0096) / 1.38415
    assert metrics.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert metrics.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert metrics.wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        metrics.wilson_interval(3, 0)


def test_mcnemar_exact_p() -> None:
    assert metrics.mcnemar_exact_p(1, 5) == pytest.approx(2 * (1 + 6) / 64)  # 0.21875
    assert metrics.mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)
    assert metrics.mcnemar_exact_p(0, 0) == metrics.mcnemar_exact_p(4, 4) == 1.0
    assert metrics.mcnemar_exact_p(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    big = metrics.mcnemar_exact_p(400, 480)  # log-space sum stays accurate for large counts
    scipy_stats = pytest.importorskip("scipy.stats")
    assert big == pytest.approx(scipy_stats.binomtest(400, 880, 0.5).pvalue, rel=1e-9)


def test_paired_difference_interval() -> None:
    # a=10 both right, b=15 only the original right, c=5 only the variant right, d=20 both wrong; n=50.
    # p1 = 25/50 = 0.5, Wilson (0.3664, 0.6336); p2 = 15/50 = 0.3, Wilson (0.1910, 0.4375).
    # ad - bc = 125 > n/2, so phi = (125 - 25) / sqrt(25 * 25 * 15 * 35) = 0.17457.
    # lower = 0.2 - sqrt(0.13355^2 - 2 * 0.17457 * 0.13355 * 0.13750 + 0.13750^2) = 0.2 - 0.17416 = 0.0258
    # upper = 0.2 + sqrt(0.13355^2 - 2 * 0.17457 * 0.13355 * 0.10896 + 0.10896^2) = 0.2 + 0.15693 = 0.3569
    counts = metrics.PairedCounts(10, 15, 5, 20)
    assert metrics.paired_difference_ci(counts) == pytest.approx((0.0258, 0.3569), abs=1e-4)
    lo, hi = metrics.paired_difference_ci(metrics.PairedCounts(443, 0, 0, 7))
    assert lo < 0 < hi and hi - lo < 0.02  # no disagreement: a narrow interval around 0, not a point
    assert metrics.paired_counts([1, 1, 0, 0], [1, 0, 1, 0]) == metrics.PairedCounts(1, 1, 1, 1)


def test_sqnr_and_cosine() -> None:
    ref = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert metrics.sqnr_db(ref, ref) == math.inf
    assert metrics.sqnr_db(ref, ref + np.array([[0.3, 0.4], [0, 0]])) == pytest.approx(20.0)  # noise = signal/100
    cos = metrics.cosine_similarities(ref, np.array([[4.0, -3.0], [0.0, 0.0]]))
    np.testing.assert_allclose(cos, [0.0, 1.0])  # orthogonal; two zero vectors count as the same
    assert metrics.cosine_similarities(ref, 2 * ref)[0] == pytest.approx(1.0)


# --- the command line -----------------------------------------------------------------------------------------


def test_cli_compare_text_and_plot(tmp_path: Path, variants: dict[str, Path]) -> None:
    out = tmp_path / "chart.png"
    result = run_cli("compare", str(SAMPLE), str(variants["zeroed"]), "--runs", "3", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "digits_cnn.onnx (original)  98.44%" in text and "zeroed.onnx" in text
    assert "Drop (95% CI)" in text and "Latency median / p90" in text and "155.9 KB" in text
    assert "zeroed.onnx:" in text and "McNemar p" in text and "bundled digits" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert not list(tmp_path.glob(".chart.png.*"))  # no temporary file left behind


def test_cli_compare_json_and_errors(tmp_path: Path) -> None:
    result = run_cli("compare", str(SAMPLE), str(SAMPLE), "--json", "--runs", "2")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [m["name"] for m in data["models"]] == ["digits_cnn.onnx", "digits_cnn.onnx #2"]
    assert data["models"][0]["correct"] == 443 and data["models"][1]["agreement"] == 1.0
    assert data["latency_settings"]["runs"] == 2 and data["models"][1]["latency"]["runs"] == 2

    wrong = tmp_path / "flat.npz"
    np.savez(wrong, x=np.zeros((5, 64), np.float32))
    result = run_cli("compare", str(SAMPLE), str(SAMPLE), "--data", str(wrong))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "flat.npz" in result.stderr and "[batch, 1, 8, 8]" in result.stderr
