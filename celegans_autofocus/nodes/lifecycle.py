# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Managed (lifecycle) nodes with an automatic start, for the camera, the stepper and the predictor.

As in ROS 2's managed nodes (design.ros2.org/articles/node_lifecycle.html): ``configure`` opens the device or
model and creates the publishers and services, ``activate`` enables the publishers and creates the
subscriptions, timers and worker threads, ``deactivate`` undoes that, ``cleanup`` releases the device, and
``shutdown`` (also run by ``destroy_node``) releases whatever is still held. With the parameter
``autostart`` (true by default) the node configures and activates itself in its constructor, so a plain
start, ``ros2 run``, the launch files and ``celegans-autofocus sim`` work as with a plain node; an error
while configuring is then raised from the constructor, and :func:`common.run_node` ends the process with
exit code 2 and one FATAL line. With ``autostart:=false`` the node waits for
``ros2 lifecycle set <node> configure`` (service ``<node>/change_state``).

A subclass implements :meth:`configure`, :meth:`activate`, :meth:`deactivate` and :meth:`cleanup`; each
raises on failure, and ``deactivate``/``cleanup`` release only what is held (they run on half-done
transitions too).
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .common import ConfigError, Param

AUTOSTART = Param("autostart", True, "configure and activate at start-up (false: wait for lifecycle transitions "
                  "on <node>/change_state, e.g. `ros2 lifecycle set <node> configure`)", read_only=True)

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    """A LifecycleNode whose transitions call the subclass's hooks, and which can start itself."""

    def __init__(self, node_name: str, **kwargs):
        self._autostarting = False
        self._transition_error: BaseException | None = None
        super().__init__(node_name, **kwargs)

    # ------------------------------------------------------------ hooks (subclasses)
    def configure(self) -> None:
        """Open the device or model; create publishers (lifecycle ones) and services."""

    def activate(self) -> None:
        """Create subscriptions, timers and worker threads (the lifecycle publishers are already enabled)."""

    def deactivate(self) -> None:
        """Undo :meth:`activate` (only what exists)."""

    def cleanup(self) -> None:
        """Undo :meth:`configure` (only what exists): close the device, drop the model."""

    # ------------------------------------------------------------ start-up
    def autostart(self) -> None:
        """Configure and activate now; an error in either is raised here (with its own message)."""
        self._autostarting = True
        try:
            for name, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
                if trigger() != SUCCESS:
                    raise self._transition_error or ConfigError(f"lifecycle transition {name} failed")
        finally:
            self._autostarting = False

    @property
    def lifecycle_state(self) -> str:
        """'unconfigured', 'inactive', 'active' or 'finalized'."""
        return self._state_machine.current_state[1]

    @property
    def is_active(self) -> bool:
        return self.lifecycle_state == "active"

    # ------------------------------------------------------------ rclpy transition callbacks
    def _attempt(self, name: str, step, undo) -> bool:
        """Run ``step``; on an exception run ``undo`` and keep the error.

        The error is logged unless autostarting: then :meth:`autostart` raises it and run_node reports it
        as the FATAL line.
        """
        self._transition_error = None
        try:
            step()
            return True
        except Exception as exc:  # a failed transition leaves the node where it was, never half-open
            self._transition_error = exc
            try:
                undo()
            except Exception as undo_exc:  # the first error is the one to report
                self.get_logger().error(f"{name}: releasing after the failure also failed: {undo_exc}")
            if not self._autostarting:
                self.get_logger().error(f"{name} failed: {exc}")
            return False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self._attempt("configure", self.configure, self.cleanup):
            return FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)  # publishers first: the first callbacks can publish
        if not self._attempt("activate", self.activate, self.deactivate):
            super().on_deactivate(state)
            return FAILURE
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()  # subscriptions, timers and workers first: what is in flight is still published
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        return super().on_error(state)

    def _release_all(self) -> None:
        self.deactivate()
        self.cleanup()

    def destroy_node(self) -> None:
        """Shut down (releasing the device) unless already finalized, then destroy the node."""
        try:
            # after rclpy's shutdown (SIGTERM) the transition could not be announced: release directly
            shut_down = self.lifecycle_state == "finalized" or (
                self.context.ok() and self.lifecycle_state in ("unconfigured", "inactive", "active")
                and self.trigger_shutdown() == SUCCESS)
        except Exception:  # the node was half built
            shut_down = False
        if not shut_down:
            self._release_all()
        super().destroy_node()
