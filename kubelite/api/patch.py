"""The three PATCH bodies kube-apiserver accepts, applied to JSON documents.

- ``json_merge_patch``      application/merge-patch+json (RFC 7386)
- ``json_patch``            application/json-patch+json (RFC 6902)
- ``strategic_merge_patch`` application/strategic-merge-patch+json (what ``kubectl apply``,
  ``kubectl patch`` and ``kubectl edit`` send by default for built-in kinds)

None of them mutates its inputs; each returns a new document. Failures raise ``PatchError``
whose message follows kube-apiserver's (which comes from evanphx/json-patch and
k8s.io/apimachinery/pkg/util/strategicpatch), and whose ``code`` is the HTTP status the API
should answer with.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from kubelite.api.patchmeta import BUILTIN, FieldMeta, PatchSchema

JSONValue: TypeAlias = "dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"


class PatchError(ValueError):
    """A patch that cannot be applied. ``code`` is 400 for a malformed patch, 422 otherwise."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _clone(value: JSONValue) -> JSONValue:
    if isinstance(value, dict):
        return _clone_object(value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _clone_object(value: JSONObject) -> JSONObject:
    return {k: _clone(v) for k, v in value.items()}


def json_equal(a: JSONValue, b: JSONValue) -> bool:
    """JSON equality: like ``==`` except that ``true`` is not ``1`` and ``false`` is not ``0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return a == b


# --- RFC 7386 -----------------------------------------------------------------------------------


def json_merge_patch(target: JSONValue, patch: JSONValue) -> JSONValue:
    """Apply a JSON merge patch: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _clone(patch)
    return _merge_into(_clone_object(target) if isinstance(target, dict) else {}, patch)


def _merge_into(target: JSONObject, patch: JSONObject) -> JSONObject:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            target[key] = _merge_into(current if isinstance(current, dict) else {}, value)
        else:
            target[key] = _clone(value)
    return target


# --- RFC 6902 -----------------------------------------------------------------------------------

_MISSING = ": missing value"
_INVALID_INDEX = ": invalid index referenced"
_INDEX_RE = re.compile(r"[-+]?[0-9]+")


def json_patch(target: JSONValue, ops: JSONValue) -> JSONValue:
    """Apply a JSON patch (a list of add/remove/replace/move/copy/test operations).

    Like kube-apiserver (evanphx/json-patch v4) negative array indices count from the end.
    Unlike it, and as RFC 6902 says, ``replace`` and ``test`` of a missing key fail.
    """
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400)
    doc = _Document(_clone(target))
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("json: cannot unmarshal array into Go value of type jsonpatch.Operation", 400)
        kind = op.get("op")
        if kind == "add":
            doc.add(op)
        elif kind == "remove":
            doc.remove(op)
        elif kind == "replace":
            doc.replace(op)
        elif kind == "move":
            doc.move(op)
        elif kind == "copy":
            doc.copy(op)
        elif kind == "test":
            doc.test(op)
        else:
            raise PatchError(f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}")
    return doc.root


def _tokens(pointer: str) -> list[str] | None:
    """RFC 6901 reference tokens, or None for a pointer that does not start with '/'."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        return None
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(token: str, length: int) -> int | None:
    """Position ``token`` names in a list of ``length`` items (for add, ``length`` is one past the end)."""
    if not _INDEX_RE.fullmatch(token):
        return None
    i = int(token)
    if i < 0:
        i += length
    return i if 0 <= i < length else None


class _Document:
    def __init__(self, root: JSONValue) -> None:
        self.root = root

    @staticmethod
    def _pointer(op: JSONObject, field: str, kind: str) -> str:
        value = op.get(field)
        if not isinstance(value, str):
            raise PatchError(
                f"{kind} operation failed to decode {field}: operation missing {field} field{_MISSING}"
            )
        return value

    @staticmethod
    def _value(op: JSONObject, kind: str) -> JSONValue:
        if "value" not in op:
            raise PatchError(f"{kind} operation, missing value field{_MISSING}")
        return _clone(op["value"])

    def _container(self, pointer: str) -> tuple[dict[str, JSONValue] | list[JSONValue], str] | None:
        """The object or array that holds the last token of ``pointer``, and that token."""
        tokens = _tokens(pointer)
        if not tokens:
            return None
        node = self.root
        for token in tokens[:-1]:
            if isinstance(node, dict):
                node = node.get(token)
            elif isinstance(node, list):
                i = _index(token, len(node))
                node = node[i] if i is not None else None
            else:
                return None
        if isinstance(node, dict | list):
            return node, tokens[-1]
        return None

    def _get(self, pointer: str) -> tuple[bool, JSONValue]:
        if pointer == "":
            return True, self.root
        found = self._container(pointer)
        if found is None:
            return False, None
        node, key = found
        if isinstance(node, dict):
            return (key in node), node.get(key)
        i = _index(key, len(node))
        return (i is not None), (node[i] if i is not None else None)

    def _insert(self, node: dict[str, JSONValue] | list[JSONValue], key: str, value: JSONValue) -> str:
        """Add ``value`` at ``key``; returns an error detail, or "" on success."""
        if isinstance(node, dict):
            node[key] = value
            return ""
        if key == "-":
            node.append(value)
            return ""
        if not _INDEX_RE.fullmatch(key):
            atoi = f'strconv.Atoi: parsing "{key}": invalid syntax'
            return f"value was not a proper array index: '{key}': {atoi}"
        i = _index(key, len(node) + 1)
        if i is None:
            return f"Unable to access invalid index: {key}{_INVALID_INDEX}"
        node.insert(i, value)
        return ""

    def _delete(self, node: dict[str, JSONValue] | list[JSONValue], key: str) -> tuple[str, JSONValue]:
        """Remove ``key``; returns (error detail or "", removed value)."""
        if isinstance(node, dict):
            if key not in node:
                return f"Unable to remove nonexistent key: {key}{_MISSING}", None
            return "", node.pop(key)
        i = _index(key, len(node))
        if i is None:
            return f"Unable to access invalid index: {key}{_INVALID_INDEX}", None
        return "", node.pop(i)

    def add(self, op: JSONObject) -> None:
        path = self._pointer(op, "path", "add")
        value = self._value(op, "add")
        if path == "":
            self.root = value
            return
        found = self._container(path)
        if found is None:
            raise PatchError(f'add operation does not apply: doc is missing path: "{path}"{_MISSING}')
        if err := self._insert(*found, value):
            raise PatchError(f"error in add for path: '{path}': {err}")

    def remove(self, op: JSONObject) -> None:
        path = self._pointer(op, "path", "remove")
        found = self._container(path)
        if found is None:
            raise PatchError(f'remove operation does not apply: doc is missing path: "{path}"{_MISSING}')
        err, _ = self._delete(*found)
        if err:
            raise PatchError(f"error in remove for path: '{path}': {err}")

    def replace(self, op: JSONObject) -> None:
        path = self._pointer(op, "path", "replace")
        value = self._value(op, "replace")
        if path == "":
            self.root = value
            return
        found = self._container(path)
        if found is None:
            raise PatchError(f"replace operation does not apply: doc is missing path: {path}{_MISSING}")
        node, key = found
        if isinstance(node, dict):
            if key not in node:
                raise PatchError(f"replace operation does not apply: doc is missing key: {path}{_MISSING}")
            node[key] = value
            return
        i = _index(key, len(node))
        if i is None:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path}{_MISSING}")
        node[i] = value

    def move(self, op: JSONObject) -> None:
        source = self._pointer(op, "from", "move")
        path = self._pointer(op, "path", "move")
        if source == path:
            return
        if path.startswith(source + "/"):
            raise PatchError(f"move operation does not apply: from {source} is a prefix of path {path}")
        found = self._container(source)
        if found is None:
            raise PatchError(f"move operation does not apply: doc is missing from path: {source}{_MISSING}")
        err, value = self._delete(*found)
        if err:
            raise PatchError(f"error in move for path: '{found[1]}': {err}")
        target = self._container(path)
        if target is None:
            raise PatchError(
                f"move operation does not apply: doc is missing destination path: {path}{_MISSING}"
            )
        if err := self._insert(*target, value):
            raise PatchError(f"error in move for path: '{path}': {err}")

    def copy(self, op: JSONObject) -> None:
        source = self._pointer(op, "from", "copy")
        path = self._pointer(op, "path", "copy")
        exists, value = self._get(source)
        if not exists:
            raise PatchError(f"copy operation does not apply: doc is missing from path: {source}{_MISSING}")
        if path == "":
            self.root = _clone(value)
            return
        target = self._container(path)
        if target is None:
            raise PatchError(
                f"copy operation does not apply: doc is missing destination path: {path}{_MISSING}"
            )
        if err := self._insert(*target, _clone(value)):
            raise PatchError(f"error while adding value during copy: {err}")

    def test(self, op: JSONObject) -> None:
        path = self._pointer(op, "path", "test")
        expected = op.get("value")
        if path != "" and self._container(path) is None:
            raise PatchError(f"test operation does not apply: is missing path: {path}{_MISSING}")
        exists, actual = self._get(path)
        if not exists or not json_equal(actual, expected):
            raise PatchError(f"testing value {path} failed: test failed")


# --- strategic merge patch ----------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
_SET_ELEMENT_ORDER = "$setElementOrder/"

_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"


def strategic_merge_patch(
    target: JSONObject,
    patch: JSONObject,
    definition: str | None,
    schema: PatchSchema = BUILTIN,
) -> JSONObject:
    """Apply a Kubernetes strategic merge patch to ``target``.

    ``definition`` names the OpenAPI definition of ``target``
    (``patchmeta.definition_for_kind(apiVersion, kind)``); with None, or below fields the
    schema does not know, maps merge key by key and lists are replaced, as in a JSON merge
    patch. Lists whose field has strategy ``merge`` are merged by their merge key (or, for
    primitives, unioned); ``null`` deletes a key; ``$patch: replace|delete|merge``,
    ``$retainKeys``, ``$deleteFromPrimitiveList/<f>`` and ``$setElementOrder/<f>`` directives
    are honoured the way kube-apiserver honours them, including its element order: items
    named in the patch keep the patch's order and server-only items keep their place relative
    to them.
    """
    if not isinstance(target, dict) or not isinstance(patch, dict):
        raise PatchError("invalid JSON document", 400)
    return _StrategicMerge(schema).merge_map(_clone_object(target), _clone_object(patch), definition)


def _is_directive_key(key: str) -> bool:
    return (
        key in (_DIRECTIVE, _RETAIN_KEYS)
        or key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
        or key.startswith(_SET_ELEMENT_ORDER)
    )


def _fresh(value: JSONValue) -> tuple[JSONValue, bool]:
    """A patch value that lands where the target has nothing to merge with.

    Drops nulls inside maps and every directive; a map marked ``$patch: delete`` is dropped
    whole (second item False). kube-apiserver also drops maps marked ``replace`` here; we keep
    them, since replacing nothing with a value means setting it.
    """
    if isinstance(value, dict):
        if value.get(_DIRECTIVE, "replace") not in ("replace", "merge"):
            return None, False
        out: JSONObject = {}
        for k, v in value.items():
            if v is None or _is_directive_key(k):
                continue
            cleaned, keep = _fresh(v)
            if keep:
                out[k] = cleaned
        return out, True
    if isinstance(value, list):
        items: list[JSONValue] = []
        for v in value:
            if isinstance(v, dict) and list(v) == [_DIRECTIVE]:
                continue  # a bare list directive such as {"$patch": "replace"}
            cleaned, keep = _fresh(v)
            if keep:
                items.append(cleaned)
        return items, True
    return value, True


def _no_merge_key(item: JSONValue, key: str) -> PatchError:
    return PatchError(f"map: {item!r} does not contain declared merge key: {key}")


def _element_kind(*lists: list[JSONValue]) -> str:
    """ "map" or "scalar" for the elements of ``lists``; "" if all are empty."""
    kind = ""
    for items in lists:
        for item in items:
            if isinstance(item, list):
                raise PatchError("lists of lists are not supported")
            this = "map" if isinstance(item, dict) else "scalar"
            if kind and kind != this:
                raise PatchError(f"list element types are not identical: {list(lists)!r}")
            kind = this
    return kind


def _key_of(item: JSONValue, merge_key: str, kind: str) -> JSONValue:
    """What identifies ``item`` in its list: its merge key's value for maps, itself for scalars."""
    if kind == "map":
        return item.get(merge_key) if isinstance(item, dict) else None
    return item


def _position(items: list[JSONValue], item: JSONValue, merge_key: str, kind: str) -> int:
    wanted = _key_of(item, merge_key, kind)
    for i, candidate in enumerate(items):
        if json_equal(_key_of(candidate, merge_key, kind), wanted):
            return i
    return -1


def _require_merge_key(merge_key: str, *lists: list[JSONValue]) -> None:
    for items in lists:
        for item in items:
            if not isinstance(item, dict):
                raise PatchError(f"expected a map, but received {item!r}")
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)


def _sort_by(items: list[JSONValue], order: list[JSONValue], merge_key: str, kind: str) -> list[JSONValue]:
    if kind == "map":
        _require_merge_key(merge_key, items, order)

    def rank(item: JSONValue) -> int:
        pos = _position(order, item, merge_key, kind)
        return pos if pos >= 0 else len(order)

    return sorted(items, key=rank)


def _normalize_order(
    patch_items: list[JSONValue],
    server_only: list[JSONValue],
    patch_order: list[JSONValue],
    server_order: list[JSONValue],
    merge_key: str,
    kind: str,
) -> list[JSONValue]:
    """Patch items in patch order, server-only items in server order, interleaved as kube does.

    A server-only item goes before the next patch item only when the live list had it
    earlier; items new to the list therefore come before the server-only items that follow.
    """
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    out: list[JSONValue] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
            continue
        if i < len(left):
            li = _position(server_order, left[i], merge_key, kind)
            ri = _position(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
                continue
        out.append(right[j])
        j += 1
    return out


def _partition(
    merged: list[JSONValue], by: list[JSONValue], merge_key: str
) -> tuple[list[JSONValue], list[JSONValue]]:
    """Split ``merged`` into the items present in ``by`` and the rest."""
    present: list[JSONValue] = []
    rest: list[JSONValue] = []
    for item in merged:
        if merge_key:
            if not isinstance(item, dict) or merge_key not in item:
                raise _no_merge_key(item, merge_key)
            hit = any(
                isinstance(b, dict) and merge_key in b and json_equal(b[merge_key], item[merge_key])
                for b in by
            )
        else:
            hit = any(json_equal(b, item) for b in by)
        (present if hit else rest).append(item)
    return present, rest


class _StrategicMerge:
    def __init__(self, schema: PatchSchema) -> None:
        self.schema = schema

    def merge_map(self, original: JSONObject, patch: JSONObject, definition: str | None) -> JSONObject:
        if _DIRECTIVE in patch:
            directive = patch[_DIRECTIVE]
            if directive == "replace":
                replaced, _ = _fresh({k: v for k, v in patch.items() if k != _DIRECTIVE})
                assert isinstance(replaced, dict)
                return replaced
            if directive == "delete":
                return {}
            if directive != "merge":
                raise PatchError(f"unknown patch type: {directive} in map: {patch!r}", 400)
            del patch[_DIRECTIVE]
        self._retain_keys(original, patch)
        self._set_element_order(original, patch, definition)
        for key, value in patch.items():
            is_delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
            if is_delete_list:
                key = key[len(_DELETE_FROM_PRIMITIVE_LIST) :]
                if not key:
                    raise PatchError(_BAD_PRIMITIVE_LIST, 400)
            if value is None:
                original.pop(key, None)
                continue
            current = original.get(key)
            same_shape = key in original and (
                (isinstance(current, dict) and isinstance(value, dict))
                or (isinstance(current, list) and isinstance(value, list))
            )
            if not same_shape:
                if not is_delete_list:
                    self._set_fresh(original, key, value)
                continue
            meta = self.schema.field(definition, key) or FieldMeta()
            if isinstance(current, dict) and isinstance(value, dict):
                if meta.replaces:
                    self._set_fresh(original, key, value)
                else:
                    original[key] = self.merge_map(current, value, meta.ref or None)
            elif isinstance(current, list) and isinstance(value, list):
                original[key] = self._merge_list_field(current, value, meta, is_delete_list)
        return original

    @staticmethod
    def _set_fresh(original: JSONObject, key: str, value: JSONValue) -> None:
        cleaned, keep = _fresh(value)
        if keep:
            original[key] = cleaned
        else:
            original.pop(key, None)

    @staticmethod
    def _retain_keys(original: JSONObject, patch: JSONObject) -> None:
        if _RETAIN_KEYS not in patch:
            return
        retained = patch.pop(_RETAIN_KEYS)
        if not isinstance(retained, list):
            raise PatchError(_BAD_RETAIN_KEYS, 400)
        keep = {k for k in retained if isinstance(k, str)}
        for key, value in patch.items():
            if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
                continue
            if key not in keep:
                raise PatchError(_BAD_RETAIN_KEYS, 400)
        for key in [k for k in original if k not in keep]:
            del original[key]

    def _merge_list_field(
        self, original: list[JSONValue], patch: list[JSONValue], meta: FieldMeta, is_delete_list: bool
    ) -> list[JSONValue]:
        # Deletion lists apply whatever the field's strategy.
        if meta.merges or is_delete_list:
            return self._merge_list(original, patch, meta, is_delete_list)
        cleaned, _ = _fresh(patch)
        assert isinstance(cleaned, list)
        return cleaned

    def _merge_list(
        self, original: list[JSONValue], patch: list[JSONValue], meta: FieldMeta, is_delete_list: bool
    ) -> list[JSONValue]:
        if not original and not patch:
            return original
        kind = _element_kind(original, patch)
        merge_key = meta.merge_key
        server_order = list(original)
        if kind != "map":
            if is_delete_list:
                return [item for item in original if not any(json_equal(item, d) for d in patch)]
            merged: list[JSONValue] = []
            for item in original + patch:
                if not any(json_equal(item, seen) for seen in merged):
                    merged.append(item)
            merge_key = ""
        else:
            if not merge_key:
                raise PatchError(f"cannot merge lists without merge key for {meta.ref or 'an unknown type'}")
            original, patch = self._apply_list_directives(original, patch, merge_key)
            server_order = list(original)
            merged = self._merge_by_key(original, patch, merge_key, meta.ref or None)
        patch_items, server_only = _partition(merged, patch, merge_key)
        return _normalize_order(patch_items, server_only, patch, server_order, merge_key, kind)

    @staticmethod
    def _apply_list_directives(
        original: list[JSONValue], patch: list[JSONValue], merge_key: str
    ) -> tuple[list[JSONValue], list[JSONValue]]:
        """Handle ``$patch`` items; returns (original after deletions, the plain patch items)."""
        plain: list[JSONValue] = []
        replace = False
        for item in patch:
            if not isinstance(item, dict) or _DIRECTIVE not in item:
                plain.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
                original = [
                    o
                    for o in original
                    if not (isinstance(o, dict) and json_equal(o.get(merge_key), item[merge_key]))
                ]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                # Merging is what a merge list does anyway; keep the item, drop the marker.
                if merge_key in item:
                    plain.append({k: v for k, v in item.items() if k != _DIRECTIVE})
            else:
                raise PatchError(f"unknown patch type: {directive} in map: {item!r}", 400)
        if replace:
            return plain, []
        return original, plain

    def _merge_by_key(
        self, original: list[JSONValue], patch: list[JSONValue], merge_key: str, element: str | None
    ) -> list[JSONValue]:
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                raise _no_merge_key(item, merge_key)
            for i, candidate in enumerate(original):
                if not isinstance(candidate, dict):
                    raise PatchError(f"value for key {i} is not a map")
                if merge_key in candidate and json_equal(candidate[merge_key], item[merge_key]):
                    original[i] = self.merge_map(candidate, item, element)
                    break
            else:
                cleaned, keep = _fresh(item)
                if keep:
                    original.append(cleaned)
        return original

    def _set_element_order(self, original: JSONObject, patch: JSONObject, definition: str | None) -> None:
        """Merge each list named by a ``$setElementOrder/<field>`` and put it in that order."""
        for directive_key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
            order = patch.pop(directive_key)
            field = directive_key[len(_SET_ELEMENT_ORDER) :]
            if not isinstance(order, list) or not field:
                raise PatchError(_BAD_SET_ELEMENT_ORDER, 400)
            in_original, in_patch = field in original, field in patch
            current, changes = original.get(field), patch.get(field)
            if (in_original and not isinstance(current, list)) or (
                in_patch and not isinstance(changes, list)
            ):
                raise PatchError(_BAD_SET_ELEMENT_ORDER, 400)
            current_list = current if isinstance(current, list) else []
            patch_list = changes if isinstance(changes, list) else []
            meta = self.schema.field(definition, field) or FieldMeta()
            _check_order(patch_list, order, meta.merge_key)
            if in_original and in_patch:
                merged = self._merge_list_field(list(current_list), patch_list, meta, False)
            elif in_original:
                merged = current_list
            elif in_patch:
                fresh, _ = _fresh(patch_list)
                assert isinstance(fresh, list)
                merged = fresh
            else:
                continue
            patch.pop(field, None)
            kind = _element_kind(current_list, patch_list)
            if not kind:
                original[field] = merged
                continue
            ordered, server_only = _partition(merged, order, meta.merge_key)
            original[field] = _normalize_order(
                ordered, server_only, order, current_list, meta.merge_key, kind
            )


def _check_order(patch_list: list[JSONValue], order: list[JSONValue], merge_key: str) -> None:
    """Every patch item must appear in ``$setElementOrder``, in the same relative order."""
    if not order or not patch_list:
        return
    items = [
        i for i in patch_list if not (merge_key and isinstance(i, dict) and i.get(_DIRECTIVE) == "delete")
    ]
    p = s = 0
    while p < len(items) and s < len(order):
        left, right = items[p], order[s]
        if isinstance(left, dict) and _DIRECTIVE in left:
            p += 1
            continue
        if merge_key:
            if not isinstance(left, dict) or merge_key not in left:
                raise _no_merge_key(left, merge_key)
            if not isinstance(right, dict) or merge_key not in right:
                raise _no_merge_key(right, merge_key)
            equal = json_equal(left[merge_key], right[merge_key])
        else:
            equal = json_equal(left, right)
        if equal:
            p += 1
        s += 1
    if p < len(items):
        raise PatchError(
            f"The order in patch list:\n{patch_list!r}\n doesn't match $setElementOrder list:\n{order!r}\n",
            400,
        )
