"""A batch request's body, item by item: each decoded or refused on its own, so that one
malformed item fails alone, and the text of each for the batch's key digest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from kopilka.api.errors import DECODE_ERRORS, decode_error, without_lone_surrogates
from kopilka.api.json_keys import refuse_repeats, repeated_field, repeats
from kopilka.api.metrics import MALFORMED_KIND
from kopilka.api.schemas import BatchDeposit, BatchIn, BatchItem, BatchRawIn, BatchTransfer
from kopilka.errors import Conflict, InvalidInput, KopilkaError

if TYPE_CHECKING:
    from kopilka.api.app import MoneyKind

_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(BatchIn)
_raw_batch_decoder = msgspec.json.Decoder(BatchRawIn)
_item_decoder: msgspec.json.Decoder[BatchItem] = msgspec.json.Decoder(BatchItem)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A batch item refused as it was decoded, and the kind its `type` names: counted
    as that kind, or as MALFORMED_KIND when it names none we know."""

    error: KopilkaError
    kind: str


class _ItemType(msgspec.Struct):
    type: str


_item_type_decoder = msgspec.json.Decoder(_ItemType)
_ITEM_KINDS = frozenset({"deposit", "withdrawal", "transfer"})


def _malformed(error: KopilkaError, text: bytes, index: int) -> Malformed:
    try:
        # Read past a lone surrogate elsewhere in it: the item's kind is still its type's.
        kind = _item_type_decoder.decode(without_lone_surrogates(text)).type
    except DECODE_ERRORS:
        kind = MALFORMED_KIND
    return Malformed(item_error(error, index), kind if kind in _ITEM_KINDS else MALFORMED_KIND)


def _as_values(text: bytes) -> bytes:
    """A malformed item's JSON values as sent, spaced as any encoder spaces them, for its
    batch's digest: another body under the key differs, the same one sent spaced
    otherwise does not. One no reader takes (a number past any range) as sent."""
    try:
        return _encoder.encode(msgspec.json.decode(text))
    except DECODE_ERRORS:
        return text


def decode_batch(body: bytes) -> tuple[list[BatchItem | Malformed], BatchIn | bytes]:
    """The batch's items, each decoded or refused on its own, and the body as decoded,
    for its key's digest (the request, encoded only if it has a key). The whole body is
    decoded at once; only when that fails, or an item repeats a field, is it decoded
    item by item, so that a malformed item fails alone, as a refused one does.
    """
    try:
        request = _batch_decoder.decode(body)
    except DECODE_ERRORS:
        pass
    else:
        found = repeats(body)
        if found.top is not None:
            raise repeated_field(found.top)
        if found.first is None:
            return list(request.operations), request
    texts: Sequence[msgspec.Raw | bytes]
    try:
        texts = _raw_batch_decoder.decode(body).operations
    except DECODE_ERRORS as error:  # not JSON, not a list of operations, too many, too deep
        # This one's, not the first decoding's: that may have stopped at an item before
        # it came to the body's own fault (too many items, a field the body may not have).
        texts = _items_with_lone_surrogates(body, error)
    found = repeats(body)
    if found.top is not None:
        raise repeated_field(found.top)
    # No object in the body repeats a field: no item needs reading for one again (each
    # such reading made a malformed item cost ten times a good one, on the event loop).
    may_repeat = found.first is not None
    items: list[BatchItem | Malformed] = []
    decoded: list[bytes] = []
    for index, text in enumerate(texts):
        try:
            item = _item_decoder.decode(text)
            if may_repeat:
                refuse_repeats(bytes(text), item)
        except DECODE_ERRORS as error:
            # Its text for a repeat to be looked for, or to say why it is not JSON (a
            # lone surrogate, rather than the decoder's "truncated").
            readable = may_repeat or not isinstance(error, msgspec.ValidationError)
            told = decode_error(error, bytes(text) if readable else None)
            items.append(_malformed(told, bytes(text), index))
            decoded.append(_as_values(bytes(text)))
        except InvalidInput as error:  # a field given twice
            items.append(_malformed(error, bytes(text), index))
            decoded.append(bytes(text))
        else:
            items.append(item)
            decoded.append(_encoder.encode(item))
    return items, b"some items malformed\n" + b"\n".join(decoded)


def _items_with_lone_surrogates(
    body: bytes, error: msgspec.DecodeError | RecursionError
) -> list[bytes]:
    """The items of a batch whose body holds a lone surrogate's escape (JSON's grammar
    allows it; a string cut inside an emoji ends so), as sent, or the body's refusal: an
    item that holds one is refused alone, as any other malformed item is."""
    mended = without_lone_surrogates(body)
    if mended == body:
        raise decode_error(error, body) from None
    try:
        operations = _raw_batch_decoder.decode(mended).operations
    except DECODE_ERRORS:
        raise decode_error(error, body) from None
    # The escapes kept their length: each item stands in the body where it does mended.
    texts, start = [], 0
    for operation in operations:
        text = bytes(operation)
        at = mended.index(text, start)
        start = at + len(text)
        texts.append(body[at:start])
    return texts


def item_error(error: KopilkaError, index: int) -> KopilkaError:
    """An item's error, its path within the batch: `$.amount` -> `$.operations[3].amount`;
    an error about the item itself, which names no path, gets the item's."""
    where = f"`$.operations[{index}]"
    if "`$" in error.message:
        return InvalidInput(error.code, error.message.replace("`$", where, 1))
    return InvalidInput(error.code, f"{error.message} - at {where}`")


def key_made_for(item: BatchItem | Malformed) -> bool:
    return not isinstance(item, Malformed) and item.idempotency_key is None


def made_key_reused(key: str) -> Conflict:
    """An item sent without a key, refused for the one made for it (another item's key in
    the same batch, say): told where that key came from, which its caller never wrote."""
    return Conflict(
        "idempotency_key_reused",
        f"idempotency key {key!r}, made for this item of the batch's key and its place, was"
        " already used for another request (another item's own key, say): give this item a"
        " key of its own",
    )


def item_kind(item: BatchItem | Malformed) -> MoneyKind:
    """An applied or refused item's kind (a malformed one never reaches the engine)."""
    assert not isinstance(item, Malformed)
    if isinstance(item, BatchTransfer):
        return "transfer"
    return "deposit" if isinstance(item, BatchDeposit) else "withdrawal"
