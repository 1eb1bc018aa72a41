"""Import TensorFlow without its start-up chatter on stderr (oneDNN, CUDA probing), which TF 2.21
writes through absl before any log level applies. Used by the CLI; library users keep TF's output.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    """Import TF and probe its devices with stderr (fd 2) sent to /dev/null, then restore it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


# CPU flags (as /proc/cpuinfo names them) that decide which kernels oneDNN runs.
_VECTOR_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
}


def cpu_description() -> dict:
    """The CPU this process runs on: model name, cores, and the vector extensions oneDNN uses
    (AVX2, AVX-512, its BF16 instructions, AMX); float32 results and speed depend on them.
    ``ONEDNN_MAX_CPU_ISA``, when set, caps what oneDNN uses and is reported too."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "extensions": [name for flag, name in _VECTOR_FLAGS.items() if flag in flags],
        "bf16_hardware": bool({"avx512_bf16", "amx_bf16"} & flags),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def onednn_enabled() -> bool:
    """Whether TF's CPU kernels go through oneDNN (TF's default on x86; TF_ENABLE_ONEDNN_OPTS=0
    turns it off)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def bf16_capped() -> bool:
    """Whether ONEDNN_MAX_CPU_ISA caps oneDNN below its bf16 kernels. A CPU with bf16 instructions
    then fails to create bf16 primitives (the process aborts), where a CPU without them emulates
    bf16 in float32."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return isa in (
        "SSE41",
        "AVX",
        "AVX2",
        "AVX2_VNNI",
        "AVX2_VNNI_2",
        "AVX512_CORE",
        "AVX512_CORE_VNNI",
    )


def bf16_warning(policy: str) -> str | None:
    """Why ``mixed_bfloat16`` would be slow here (no GPU, no bf16 instructions), or None."""
    if policy != "mixed_bfloat16":
        return None
    import tensorflow as tf

    cpu = cpu_description()
    if tf.config.list_logical_devices("GPU") or (cpu["bf16_hardware"] and not bf16_capped()):
        return None
    return (
        f"mixed_bfloat16 on {cpu['model']}, a CPU without bf16 instructions (AVX-512 BF16 or "
        "AMX): oneDNN emulates bf16 in float32 and training runs several times slower (9x "
        "measured on an AVX2 EPYC); use --precision float32 here"
    )
