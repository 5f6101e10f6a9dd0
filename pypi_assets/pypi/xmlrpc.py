"""XML-RPC encoding with ``xmlrpc.client`` and decoding through defusedxml's expat parser.

No DTDs, no entity expansion, no external entities: a hostile upstream cannot blow up memory.
"""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any

from defusedxml.common import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser

from .errors import XmlRpcError

__all__ = ["XmlRpcError", "dumps_call", "loads_response", "rate_limit_wait"]

MAX_XMLRPC_BYTES = 256 * 1024 * 1024
#: Warehouse's rate-limit message, in a 429 body or an XML-RPC fault inside a 200:
#: "The action could not be performed because there were too many requests. Limit may
#: reset in N seconds."
_RESET = re.compile(r"limit may reset in (\d{1,9}) seconds?", re.IGNORECASE)
_TOO_MANY = re.compile(r"too ?many ?requests", re.IGNORECASE)
#: The wait for a rate-limit message that names none.
DEFAULT_RATE_WAIT = 60.0


def dumps_call(method: str, *params: Any) -> bytes:
    return xmlrpc.client.dumps(params, method, allow_none=False).encode("utf-8")


def loads_response(body: bytes | bytearray) -> Any:
    """Decode a method response; faults and hostile XML raise :class:`XmlRpcError`."""
    if len(body) > MAX_XMLRPC_BYTES:
        raise XmlRpcError("XML-RPC response is too large")
    unmarshaller = xmlrpc.client.Unmarshaller(use_datetime=False, use_builtin_types=True)
    parser = DefusedExpatParser(unmarshaller, forbid_dtd=True, forbid_entities=True)
    try:
        parser.feed(body)
        parser.close()
        result = unmarshaller.close()
    except xmlrpc.client.Fault as fault:
        raise XmlRpcError(f"XML-RPC fault {fault.faultCode}: {fault.faultString}") from fault
    except (DefusedXmlException, xmlrpc.client.ResponseError, ValueError) as exc:
        raise XmlRpcError(f"refused XML-RPC response: {exc}") from exc
    except Exception as exc:  # expat.ExpatError and friends
        raise XmlRpcError(f"malformed XML-RPC response: {exc}") from exc
    return result[0] if len(result) == 1 else result


def rate_limit_wait(text: str) -> float | None:
    """The seconds a rate-limit message asks to wait ("Limit may reset in N seconds"; a
    "too many requests" message naming no wait: :data:`DEFAULT_RATE_WAIT`), or ``None`` when
    ``text`` is not a rate-limit message."""
    found = _RESET.search(text)
    if found is not None:
        return float(found.group(1))
    return DEFAULT_RATE_WAIT if _TOO_MANY.search(text) else None
