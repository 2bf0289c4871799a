"""The coordination service's key-value store as a small mailbox: the only fdn module that touches it.

JAX's distributed runtime already runs a key-value store on process 0 (its coordination service) and every
process holds a client to it; fdn exchanges jobs, outcomes and heartbeats there, so a multi-host search opens
no sockets of its own and needs no device collectives. The client is private API
(``jax._src.distributed.global_state.client``) and has changed between releases (``get_live_nodes`` returned a
list in 0.8.0, a dict since), so `check_version` pins it: the methods used here were read from jax 0.10.2's
own bindings, and any other minor version stops with one line instead of failing somewhere in a run.
"""

from __future__ import annotations

import jax

from fdn.errors import UserError

SUPPORTED = ((0, 10),)  # (major, minor) versions of jax whose client this module was checked against
# what each method must accept, as the binding's signature spells it (its __doc__ starts with it)
_METHODS = {
    "key_value_set": "key_value_set(self, key: str, value: str, allow_overwrite: bool = False)",
    "blocking_key_value_get": "blocking_key_value_get(self, key: str, timeout_in_ms: int)",
    "key_value_try_get": "key_value_try_get(self, key: str)",
    "key_value_dir_get": "key_value_dir_get(self, key: str)",
    "key_value_delete": "key_value_delete(self, key: str)",
    "wait_at_barrier": "wait_at_barrier(self, barrier_id: str, timeout_in_ms: int, process_ids:",
    "get_live_nodes": "get_live_nodes(self, process_ids:",
}


class UnsupportedJax(UserError, RuntimeError):
    """The installed jax's coordination-service client is not the one `Mailbox` was written against."""


class MailboxError(RuntimeError):
    """A mailbox call failed for another reason than a missing key or a timeout (the coordinator is gone)."""


def check_version(version: str | None = None, client_type=None) -> None:
    """Raises `UnsupportedJax` unless jax's version is in `SUPPORTED` and its client has `_METHODS`."""
    version = version or jax.__version__
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    supported = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED)
    if major_minor not in SUPPORTED:
        raise UnsupportedJax(
            f"multi-process runs use JAX's private coordination-service client, checked for jax {supported} "
            f"only; this is jax {version}: install jax {supported}, or check the client's methods and extend "
            "fdn/distributed/mailbox.py"
        )
    if client_type is None:
        from jax._src.lib import _jax

        client_type = _jax.DistributedRuntimeClient
    for name, signature in _METHODS.items():
        doc = (getattr(getattr(client_type, name, None), "__doc__", None) or "").strip()
        if not doc.startswith(signature):
            found = doc.splitlines()[0] if doc else "no such method"
            raise UnsupportedJax(
                f"jax {version}'s coordination-service client does not match {signature}...) (found {found!r}): "
                "fdn/distributed/mailbox.py "
                "needs updating for it"
            )


def _missing(err: Exception) -> bool:
    return str(err).startswith("NOT_FOUND")


def _timed_out(err: Exception) -> bool:
    return str(err).startswith("DEADLINE_EXCEEDED")


class Mailbox:
    """Strings under ``prefix`` in the coordination service's store; missing keys and timeouts are None."""

    def __init__(self, client=None, prefix: str = "fdn/"):
        if client is None:
            from jax._src.distributed import global_state

            check_version()
            client = global_state.client
            if client is None:
                raise MailboxError("jax.distributed is not initialised (fdn.distributed.runtime.initialize first)")
        self.client, self.prefix = client, prefix

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except jax.errors.JaxRuntimeError as err:
            if _missing(err) or _timed_out(err):
                raise
            raise MailboxError(f"mailbox {what} failed: {str(err).splitlines()[0]}") from err

    def set(self, key: str, value: str, overwrite: bool = False) -> None:
        self._call("set", self.client.key_value_set, self.prefix + key, value, overwrite)

    def get(self, key: str, timeout_s: float) -> str | None:
        """``key``'s value, waiting up to ``timeout_s`` seconds for it to be set; None if it was not."""
        try:
            return self._call("get", self.client.blocking_key_value_get, self.prefix + key, int(timeout_s * 1000))
        except jax.errors.JaxRuntimeError as err:
            if _timed_out(err):
                return None
            raise

    def try_get(self, key: str) -> str | None:
        try:
            return self._call("try_get", self.client.key_value_try_get, self.prefix + key)
        except jax.errors.JaxRuntimeError as err:
            if _missing(err):
                return None
            raise

    def dir_get(self, directory: str) -> dict[str, str]:
        """Every key under ``directory`` (relative to the prefix, without a trailing slash) -> its value."""
        base = self.prefix + directory.rstrip("/") + "/"
        pairs = self._call("dir_get", self.client.key_value_dir_get, base)
        return {key[len(self.prefix) :]: value for key, value in pairs}

    def delete(self, key: str) -> None:
        self._call("delete", self.client.key_value_delete, self.prefix + key)

    def barrier(self, name: str, timeout_s: float, process_ids=None) -> bool:
        """Waits until every process (or ``process_ids``) reaches barrier ``name``; False on timeout."""
        try:
            args = (self.prefix + name, int(timeout_s * 1000))
            self._call("barrier", self.client.wait_at_barrier, *args, *([list(process_ids)] if process_ids else []))
            return True
        except jax.errors.JaxRuntimeError as err:
            if _timed_out(err):
                return False
            raise

    def live_nodes(self, process_ids) -> list[int]:
        """The processes among ``process_ids`` the coordination service holds alive. It blocks until every one
        listed has answered or been declared dead (JAX's heartbeat timeout): not for polling."""
        live = self._call("live_nodes", self.client.get_live_nodes, list(process_ids))
        return sorted(int(p) for p in live)  # a dict {id: incarnation} in 0.10, a list in 0.8
