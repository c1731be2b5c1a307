"""Errors a CNI plugin reports, mapped onto Tether's error hierarchy.

A plugin's error JSON (``code``, ``msg``, ``details``) is kept verbatim in the message:
``CNI plugin bridge failed (ADD): code 11: <msg>; <details>``. Codes that mean "try again later"
(11) or "plugin not available" (50, 51) become ``Unavailable``; anything else ``Internal``.
"""

from __future__ import annotations

from cni.errdefs import Internal, TetherError, Unavailable

# CNI spec well-known error codes.
CODE_TRY_AGAIN_LATER = 11
CODE_NOT_AVAILABLE = 50
CODE_NOT_AVAILABLE_DAMAGED = 51
_TRANSIENT = frozenset({CODE_TRY_AGAIN_LATER, CODE_NOT_AVAILABLE, CODE_NOT_AVAILABLE_DAMAGED})


class PluginFailure:
    """Mixin carrying what the plugin said; ``cni_code`` is None when it gave no error JSON."""

    plugin: str = ""
    command: str = ""
    cni_code: int | None = None
    cni_msg: str = ""
    cni_details: str = ""


class CNIPluginFailed(PluginFailure, Internal):
    pass


class CNIPluginUnavailable(PluginFailure, Unavailable):
    pass


def plugin_error(plugin: str, command: str, *, code: int | None, msg: str, details: str = "",
                 detail: str | None = None) -> TetherError:
    """Build the error for a failed plugin call.

    With ``code`` set, ``msg``/``details`` are the plugin's own words; without, ``msg`` describes
    the failure (exit status and trimmed stderr).
    """
    if code is not None:
        text = f"CNI plugin {plugin} failed ({command}): code {code}: {msg}"
        if details:
            text += f"; {details}"
    else:
        text = f"CNI plugin {plugin} failed ({command}): {msg}"
    cls: type[CNIPluginFailed | CNIPluginUnavailable] = (
        CNIPluginUnavailable if code in _TRANSIENT else CNIPluginFailed)
    err = cls(text, detail=detail)
    err.plugin, err.command = plugin, command
    err.cni_code, err.cni_msg, err.cni_details = code, msg, details
    return err
