"""What the CPU is: its name and feature flags (one read of /proc/cpuinfo), and whether it computes
bfloat16 natively (what ``--mixed_precision=auto`` and the benchmark decide by)."""


def cpu_info(path="/proc/cpuinfo"):
    """(model name, set of feature flags) of the first processor in /proc/cpuinfo; ("", empty set) where
    there is no such file (not Linux) or it names neither."""
    name, flags = "", None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and flags is None:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return name, flags or frozenset()


def native_bfloat16(path="/proc/cpuinfo"):
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX); Linux only."""
    _, flags = cpu_info(path)
    return "avx512_bf16" in flags or "amx_bf16" in flags
