"""Property-based tests: thousands of arbitrary inputs, no exception escapes, the counting invariants hold."""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sd_trainplan.plan import FIELDS, compute_plan, parse_inputs, plan_from_raw
from sd_trainplan.plan.inputs import val_images

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

junk = st.one_of(st.none(), st.text(max_size=12), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                 st.lists(st.integers(-5, 5000), max_size=3))


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), junk, max_size=len(FIELDS)))
def test_no_exception_escapes(raw):
    result = plan_from_raw(raw)
    if result.errors:
        assert not result.quantities
        for e in result.errors:
            assert e.field in FIELDS and e.message
    else:
        assert result.quantities
        result.to_json()


def valid_inputs():
    """Valid raw inputs: a dataset large enough for the batch, every optional input sometimes given."""
    return st.fixed_dictionaries({
        "method": st.sampled_from(["dreambooth", "ti", "lora"]),
        "batch_size": st.integers(1, 16),
        "grad_accum": st.integers(1, 32),
        "gpus": st.integers(1, 8),
        "images": st.integers(1, 500),
        "repeats": st.integers(1, 20),
        "val_split": st.sampled_from([0, 0.07, 0.1, 0.2, 0.5]),
    }, optional={
        "lr": st.floats(1e-9, 1e-1),
        "resolution": st.integers(8, 256).map(lambda x: 8 * x),
        "train_text_encoder": st.booleans(),
        "strength": st.one_of(st.sampled_from(["soft", "medium", "hard", "very hard"]), st.floats(0.01, 10)),
        "scheduler": st.sampled_from(["constant", "linear", "cosine", "polynomial", "cyclical", "one_cycle",
                                      "constant_with_warmup", "cosine_with_restarts", "5e-3:100, 1e-3"]),
        "warmup": st.integers(0, 1000),
        "steps": st.integers(1, 100000),
        "step_unit": st.sampled_from(["update", "batch"]),
        "weights": st.sampled_from(["mixed", "bf16", "fp16", "fp32"]),
        "lr_scaling": st.sampled_from(["none", "linear", "sqrt"]),
        "sweep_epochs": st.floats(0.5, 200),
    }).map(_fit_batch)


def _fit_batch(raw):
    # keep BS x P within the training images so the input is valid
    val = val_images(raw["images"], raw["val_split"])
    if val >= raw["images"]:
        raw["val_split"] = 0
        val = 0
    train = (raw["images"] - val) * raw["repeats"]
    raw["gpus"] = min(raw["gpus"], train)
    raw["batch_size"] = max(1, min(raw["batch_size"], train // raw["gpus"]))
    return raw


@SETTINGS
@given(valid_inputs())
def test_invariants(raw):
    r = plan_from_raw(raw)
    assert not r.errors, r.errors
    bs, ga, p = raw["batch_size"], raw["grad_accum"], raw["gpus"]
    updates, batches = r.value("weight_updates"), r.value("batches")
    if updates is not None:
        assert updates * ga <= batches
        assert r.value("images_seen") == batches * bs * p
        assert r.value("epochs") == r.value("images_seen") / r.value("train_images")
        assert r.value("planned_updates") == updates
    if "steps" in raw and raw.get("step_unit") == "batch":
        doubled = plan_from_raw({**raw, "grad_accum": 2 * ga})
        assert doubled.value("weight_updates") == updates // 2
        assert doubled.value("batches") == batches
    for id in ("val_images", "train_images", "frames", "bs_ga_steps", "class_images", "lora_steps",
               "standard_steps", "advanced_steps", "scheduled_steps", "sweep_steps", "planned_updates"):
        v = r.value(id)
        assert v is None or (isinstance(v, int) and v >= 0), (id, v)


@SETTINGS
@given(valid_inputs(), st.floats(1e-8, 1e-2), st.floats(1.5, 1000))
def test_spf_scales_exactly_with_inverse_lr(raw, lr, k):
    a = plan_from_raw({**raw, "lr": lr}).value("spf")
    b = plan_from_raw({**raw, "lr": lr * k}).value("spf")
    assert math.isclose(a, b * k, rel_tol=1e-12)


INVALID = {
    "images": st.one_of(st.integers(-10**6, 0), st.text(alphabet="abc!", min_size=1), st.just(float("nan")),
                        st.just(2.5)),
    "repeats": st.one_of(st.integers(-100, 0), st.just("x")),
    "val_split": st.one_of(st.floats(1, 1e6), st.floats(-1e6, -1e-9), st.just("nan")),
    "batch_size": st.one_of(st.integers(-100, 0), st.just("four"), st.just(float("inf"))),
    "grad_accum": st.one_of(st.integers(-100, 0), st.just("1.5")),
    "gpus": st.one_of(st.integers(-100, 0), st.just("two")),
    "lr": st.one_of(st.floats(-1, 0), st.just("nan"), st.just("fast")),
    "resolution": st.one_of(st.integers(65, 4096).filter(lambda x: x % 8), st.integers(-100, 63)),
    "base_resolution": st.integers(65, 4096).filter(lambda x: x % 8),
    "strength": st.one_of(st.floats(-10, 0), st.just("extreme")),
    "scheduler": st.one_of(st.just("exponential"), st.just("1e-3:0"), st.just("x:100")),
    "warmup": st.integers(-100, -1),
    "steps": st.one_of(st.integers(-100, 0), st.just("many")),
    "epochs": st.one_of(st.floats(-100, 0), st.just("inf")),
    "step_unit": st.just("epoch"),
    "method": st.just("hypernetwork"),
    "weights": st.just("int8"),
    "lr_scaling": st.just("cubic"),
    "resolutions": st.one_of(st.just("512,770"), st.just("a,b")),
    "sweep_epochs": st.floats(-5, 0),
    "sweep_max_lr": st.just("-1"),
    "bounds_steps": st.one_of(st.just("300,50"), st.just("7")),
    "lr_bounds": st.one_of(st.just("1e-6,1e-7"), st.just("0,1")),
    "weight_scale": st.just(0),
    "noise_scale": st.one_of(st.just(-3), st.just("big")),
    "vram_gb": st.one_of(st.just(0), st.just("lots"), st.just(1e6)),
    "train_text_encoder": st.just("maybe"),
}


def test_every_field_has_an_invalid_strategy():
    assert set(INVALID) == set(FIELDS)


@SETTINGS
@given(valid_inputs(), st.sampled_from(sorted(INVALID)).flatmap(lambda f: st.tuples(st.just(f), INVALID[f])))
def test_every_invalid_input_names_its_field(raw, bad):
    field, value = bad
    raw = {k: v for k, v in raw.items() if k not in ("steps", "epochs") or field not in ("steps", "epochs")}
    inputs, errors = parse_inputs({**raw, field: value})
    assert inputs is None
    assert field in {e.field for e in errors}, (field, value, errors)


def test_batch_larger_than_training_images_is_an_error_on_batch_size():
    inputs, errors = parse_inputs({"images": 10, "val_split": 0.2, "batch_size": 9})
    assert inputs is None and [e.field for e in errors] == ["batch_size"]
    assert "8 training images" in errors[0].message


def test_steps_and_epochs_together_is_an_error():
    inputs, errors = parse_inputs({"images": 10, "steps": 100, "epochs": 3})
    assert inputs is None and errors[0].field == "epochs"


def test_compute_plan_is_deterministic():
    inputs, _ = parse_inputs({"images": 33, "lr": 3e-6, "batch_size": 2, "scheduler": "cosine"})
    assert compute_plan(inputs).to_json() == compute_plan(inputs).to_json()
