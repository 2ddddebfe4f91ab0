"""A small Prometheus registry: counters and gauges with labels, rendered in the text format."""

from __future__ import annotations

from collections import defaultdict

Labels = tuple[tuple[str, str], ...]


class Metrics:
    def __init__(self, namespace: str = "faultline") -> None:
        self.ns = namespace
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._meta: dict[str, tuple[str, str]] = {}

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._meta[name] = (kind, help_text)

    def inc(self, name: str, n: float = 1.0, **labels: str) -> None:
        key = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
        series = self._values[name]
        series[key] = series.get(key, 0.0) + n

    def inc_series(self, name: str, key: Labels, n: float = 1.0) -> None:
        """`inc` with the labels given as their key (pairs sorted by name), made once by a hot path."""
        series = self._values[name]
        series[key] = series.get(key, 0.0) + n

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] = float(value)

    def reset(self, name: str) -> None:
        """Forget every series of `name` (its description stays)."""
        self._values.pop(name, None)

    def observe_max(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._values[name]
        series[key] = max(series.get(key, 0.0), value)

    def render(self) -> str:
        lines = []
        for name in sorted(set(self._meta) | set(self._values)):
            full = f"{self.ns}_{name}"
            kind, help_text = self._meta.get(name, ("untyped", name))
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            for labels, value in sorted(self._values.get(name, {}).items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(
                    f"{full}{{{label_text}}} {_num(value)}" if label_text else f"{full} {_num(value)}"
                )
        return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)
