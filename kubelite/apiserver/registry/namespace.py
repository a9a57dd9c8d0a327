"""Namespace strategy: deletion moves the namespace to Terminating until its content is gone."""

from __future__ import annotations

from typing import Any

from kubelite.apiserver.registry.base import Strategy

Obj = dict[str, Any]


class NamespaceStrategy(Strategy):
    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)
        # spec.finalizers may only change through the finalize subresource.
        if "spec" in old:
            new["spec"] = old["spec"]

    def held_on_delete(self, obj: Obj) -> bool:
        return bool((obj.get("spec") or {}).get("finalizers"))

    def mark_terminating(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"
