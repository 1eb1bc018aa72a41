"""What the package reads of the machine: the CPU's vector extensions and the bf16 warning."""

from tfanomaly import _tf


def test_cpu_description_names_the_model_and_extensions():
    cpu = _tf.cpu_description()
    assert cpu["cores"] >= 1 and isinstance(cpu["model"], str) and cpu["model"]
    assert set(cpu["extensions"]) <= set(_tf._VECTOR_FLAGS.values())
    # bf16 hardware is exactly one of the two bf16 instruction sets.
    assert cpu["bf16_hardware"] == bool({"AVX-512 BF16", "AMX-BF16"} & set(cpu["extensions"]))


def test_bf16_warning_only_without_bf16_hardware(monkeypatch):
    base = {"model": "Test CPU", "cores": 2, "extensions": ["AVX2"], "onednn_max_isa": None}
    monkeypatch.setattr(_tf, "cpu_description", lambda: {**base, "bf16_hardware": False})
    message = _tf.bf16_warning("mixed_bfloat16")
    assert "Test CPU" in message and "--precision float32" in message
    assert _tf.bf16_warning("float32") is None
    monkeypatch.setattr(_tf, "cpu_description", lambda: {**base, "bf16_hardware": True})
    assert _tf.bf16_warning("mixed_bfloat16") is None
    # oneDNN capped below AVX-512 (ONEDNN_MAX_CPU_ISA) cannot use the bf16 instructions.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert _tf.bf16_capped() and _tf.bf16_warning("mixed_bfloat16") is not None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert not _tf.bf16_capped() and _tf.bf16_warning("mixed_bfloat16") is None
