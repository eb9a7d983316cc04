"""A sandbox kept in use while its session is open, and dropped as the session ends."""

from __future__ import annotations

import threading
import weakref

import httpx

from kopilka.urls import path_segment

# How long leaving a sandbox session waits to drop it, and for its keeper to stop.
SANDBOX_DROP_SECONDS = 2.0


class SandboxKeeper:
    """Keeps a sandbox in use while its session is open.

    The server drops a sandbox idle for its timeout, meant for a client that vanished;
    a person may well sit at the prompt longer than that. So a thread reads from the
    sandbox a few times per timeout, and stops when the session ends: when its client
    is closed, or else collected or left open at the program's end, which drops the
    sandbox too (the thread holds no reference to it, and kept the sandbox for as long
    as the process lived).
    """

    def __init__(
        self, client: object, http: httpx.Client, ledger: str, idle_timeout_seconds: float
    ) -> None:
        """`http`: a connection of its own, as the session's client belongs to the
        session's thread; `client`, the session's, whose end it watches."""
        self.ledger = ledger
        self.idle_timeout_seconds = idle_timeout_seconds  # as the server gave it
        self._interval_seconds = max(idle_timeout_seconds / 3, 0.05)
        self._http = http
        self._stopped = threading.Event()
        self._dropping = False  # set for this thread to drop the sandbox as it stops
        self._thread = threading.Thread(
            target=self._keep, name="kopilka-sandbox-keeper", daemon=True
        )
        self._thread.start()
        self._unclosed = weakref.finalize(client, self._client_gone)

    def _keep(self) -> None:
        while not self._stopped.wait(self._interval_seconds):
            try:
                answer = self._http.get("/v1/accounts", params={"limit": "1"})
            except httpx.HTTPError:
                continue  # the server may be back by the next round
            if answer.status_code == 404:
                return  # the sandbox has ended: the session's next command will say so
        if self._dropping:
            self._drop()

    def _client_gone(self) -> None:
        """Its client was collected unclosed, or is left open as the program ends: the
        sandbox is dropped as close() drops it, once and briefly, where the client went."""
        if threading.current_thread() is self._thread:
            # Collected in this very thread, which may hold its connections' lock: the
            # drop comes once it is out of its read.
            self._dropping = True
            self._stopped.set()
            return
        self._stopped.set()
        self._thread.join(SANDBOX_DROP_SECONDS)
        # On a thread of its own, waited for briefly: httpx bounds no name lookup, and a
        # resolver that does not answer (the network down) held the program's end for
        # as long as it took.
        try:
            dropping = threading.Thread(target=self._drop, name="kopilka-sandbox-drop", daemon=True)
            dropping.start()
        except RuntimeError:
            # No new thread as the interpreter ends (Python 3.12.0 and 3.12.1): the drop
            # is left to the server's idle timeout rather than waited for without a bound.
            return
        dropping.join(SANDBOX_DROP_SECONDS)

    def _drop(self) -> None:
        try:
            self._http.delete(
                "/v1/sandboxes/" + path_segment(self.ledger), timeout=SANDBOX_DROP_SECONDS
            )
        except httpx.HTTPError:
            pass  # the server drops it once it has been idle for its timeout
        finally:
            if threading.current_thread() is self._thread or not self._thread.is_alive():
                self._http.close()

    def forked(self) -> None:
        """In a process forked from the session's, where this thread is not: the sandbox
        is the session's to keep and to drop, never this process's, at its end neither."""
        self._unclosed.detach()

    def stop(self) -> None:
        self._unclosed.detach()  # stopped by its session: dropped there, or kept
        self._stopped.set()
        # Not waited for long: a read of a server that does not answer runs out only
        # at the client's timeout. One still under way is left to end with the process.
        self._thread.join(SANDBOX_DROP_SECONDS)
        if not self._thread.is_alive():
            self._http.close()


def left_there(keeper: SandboxKeeper, dropped: str, cause: str) -> str:
    return (
        f"the sandbox {keeper.ledger!r} {dropped} ({cause}); the server drops it, and what"
        f" it holds, once it has been idle for {keeper.idle_timeout_seconds:.10g} s"
    )
