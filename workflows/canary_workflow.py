"""`CanaryWorkflow`: one rollout of one target, from initialization to a verdict.

The workflow orchestrates: it asks the activities what the world looks like, asks
`canary.decision` what to do, and asks the activities to do it. An analysis step costs one
durable timer and one local activity, plus one more local activity when the weight changes.
"""

import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from canary import activity_specs, contract, messages
    from canary.decision import (
        ALL_TO_CANARY,
        ALL_TO_PRIMARY,
        Action,
        Decision,
        Routes,
        StepObservation,
        decide,
        failed_check,
        judge,
        promotion_step,
        restart_analysis,
        start_analysis,
    )
    from canary.details import status_markdown
    from canary.spec import Canary, Strategy, WebhookType
    from canary.status import CanaryStatus, Event, EventKind, Phase
    from canary.targets import traits
    from workflows import search_attributes
    from workflows.rollout_metrics import RolloutMetrics

RETRY_IO = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=5,
)
KUBE_TIMEOUT = timedelta(seconds=30)
NOTIFY_TIMEOUT = timedelta(seconds=30)
READY_POLL_MAX = timedelta(seconds=10)
CHECKS_WHILE_PAUSED = "checks-while-paused"
"""Patch: a paused rollout still reads the canary's readiness every interval."""
SAFE_ROLLOUT = "safe-rollout"
"""Patch: the primary is ready before it gets traffic; promotion keeps traffic on ready
workloads and copies only the analysed revision; a failed promotion leaves the canary serving.
Rollouts whose history lacks it run the code they started with."""
FAILED_ENDS_AS_FAILURE = "failed-rollout-ends-as-workflow-failure"
"""Patch: a Failed rollout fails its workflow (RolloutFailed) instead of completing it."""
CONTINUE_AS_NEW = "continue-as-new"
"""Patch: a rollout whose history grows long continues as new at the top of a wait."""
ROLL_BACK_ON_WORKFLOW_ERROR = "roll-back-on-workflow-error"
"""Patch: an unexpected exception in the workflow code (a bug) ends the rollout Failed with
traffic on a ready workload, instead of failing the workflow task again and again."""
GATE_HOOKS_LOCAL = "gate-hooks-as-local-activity"
"""Patch: a gate calls its hooks again after each interval as a local activity, which costs one
history event instead of a workflow task and three activity events."""
FEWER_ROUND_TRIPS = "fewer-round-trips"
"""Patch: the short calls to the target (initialize, readiness, image, scale, promote, restore)
are local activities, one history event each instead of three and a workflow task, so that a
rollout reaches its first analysis interval in one workflow task; and the notifications waiting
when the routes change go with them, in one local activity (`set_routes_and_notify`), so that
an analysis step that moves the weight records one event less."""
CONTINUE_AS_NEW_AT_EVENTS = 9_800
"""A run continues as new at its first wait past this many events (or when the server
suggests it), so that its history stays under about 10,000 events."""

PAUSE, RESUME, PROMOTE, ABORT = "pause", "resume", "promote", "abort"
CONTROL_SIGNALS = (PAUSE, RESUME, PROMOTE, ABORT)
_INPUT_HELP = ' Input (optional): {"reason": "why"}.'
PAUSE_HELP = "Pause the analysis: no advance, no failed checks." + _INPUT_HELP
RESUME_HELP = "Resume a paused analysis." + _INPUT_HELP
PROMOTE_HELP = "Promote now, skipping the remaining analysis (while Progressing)." + _INPUT_HELP
ABORT_HELP = "Roll back now: all traffic to the primary, canary scaled to zero." + _INPUT_HELP
SUPERSEDE_HELP = (
    'Roll out another image instead: the analysis restarts with it. Input: {"image": "..."}.'
)
UNKNOWN_SIGNAL_HELP = "Any other signal name is ignored with a warning event."


class StepFailed(Exception):
    """An activity failed for good (its retries are spent)."""

    def __init__(self, activity: str, reason: str) -> None:
        super().__init__(f"{activity} failed: {reason}")
        self.reason = reason


class RollBack(Exception):
    """Leaves whatever stage the rollout is in; carries the reason into the rollback."""


class NewRevision(Exception):
    """The canary no longer runs the revision under analysis: the analysis starts over."""


class NotReady(Exception):
    """A workload was not ready by the progress deadline; the message is the target's."""


class PromotionFailed(Exception):
    """The primary did not take the new version; the message says why."""


class PrimaryNotRestored(Exception):
    """A rollback could not give the primary back its template from before the rollout; the
    message is the rollout's final reason (what failed and which workload serves)."""


@workflow.defn(name="CanaryWorkflow")
class CanaryWorkflow:
    continue_as_new_at_events = CONTINUE_AS_NEW_AT_EVENTS
    """A class attribute, so that a test version can hand over sooner."""
    takes_fewer_round_trips: bool = True
    """False runs new rollouts as those started before FEWER_ROUND_TRIPS run (the bench
    measures what the patch saves)."""

    @workflow.init
    def __init__(self, request: contract.RolloutRequest) -> None:
        self._canary = request.canary
        self._image = request.image
        self._target_spec = activity_specs.for_target(request.canary)
        """What the workload activities get of the spec (their inputs are in the history)."""
        self._webhook_specs: dict[tuple[WebhookType, ...], Canary] = {}
        self._status = CanaryStatus(image=request.image)
        self._abort_reason: str | None = None
        self._promote_requested = False
        self._primary_replicas = 1
        self._unsent: list[Event] = []
        self._published: dict[str, object] = {}
        self._metrics = RolloutMetrics(request.canary)
        self._safe = False
        self._fewer_round_trips = False
        self._new_image: str | None = None
        self._unsent_hook_events: list[Event] = []
        self._primary_snapshot: str | None = None
        self._primary_replaced = False
        if request.image is not None:
            self._published[search_attributes.IMAGE.name] = request.image
        self._resume = request.resume
        if request.resume is not None:
            self._restore(request.resume)

    @workflow.run
    async def run(self, request: contract.RolloutRequest) -> CanaryStatus:
        self._safe = workflow.patched(SAFE_ROLLOUT)
        self._fewer_round_trips = self._safe and self._takes_fewer_round_trips()
        try:
            if self._resume is not None or await self._initialize(request.image):
                await self._roll_out()
        except RollBack as rollback:
            await self._roll_back(str(rollback))
        except StepFailed as failure:
            await self._roll_back(messages.rolling_back_error(self._canary.target, str(failure)))
        except PromotionFailed as failure:
            await self._promotion_failed(str(failure))
        except workflow.NondeterminismError:
            raise  # the code does not match the history: a worker with the right code must run it
        except Exception as error:  # cancellation and continue-as-new are no Exception
            if not workflow.patched(ROLL_BACK_ON_WORKFLOW_ERROR):
                raise
            await self._recover(error)
        await self._publish()
        self._metrics.finish(self._status)
        if self._status.phase == Phase.FAILED and workflow.patched(FAILED_ENDS_AS_FAILURE):
            # Failed in Temporal too: red in the Web UI and `temporal workflow list`, counted
            # by the failure metrics; the final status rides in the details.
            raise ApplicationError(
                self._status.reason or messages.canary_failed(self._target),
                self._status,
                type=contract.ROLLOUT_FAILED,
                non_retryable=True,
            )
        return self._status

    def _takes_fewer_round_trips(self) -> bool:
        """Whether this run takes FEWER_ROUND_TRIPS (recording its marker when it does)."""
        return self.takes_fewer_round_trips and workflow.patched(FEWER_ROUND_TRIPS)

    async def _recover(self, error: Exception) -> None:
        """After a bug: roll back (or, during a promotion, keep the analysed canary serving)
        and end Failed with the error as the reason."""
        detail = f"unexpected workflow error {type(error).__name__}: {error}"
        workflow.logger.exception("rollout of %s stopped by a workflow error", self._target)
        phase = self._status.phase
        if phase.final:
            self._event(f"{self._target} {phase}, then an {detail}", warning=True)
        elif phase in (Phase.PROMOTING, Phase.FINALISING):
            await self._promotion_failed(detail)
        else:
            await self._roll_back(messages.rolling_back_error(self._target, detail))

    # -- control ---------------------------------------------------------------------------
    # pause and resume are signals; promote and abort are updates (a refusal is the caller's
    # error and leaves no trace in the history) and also signals of the same name, for the
    # clients that only send signals (the Web UI, `temporal workflow signal`). A signal has no
    # reply, so a refused one records an event saying why. Every input may be empty or null.

    @workflow.query(description="The rollout's status: phase, weights, checks, metrics, events")
    def status(self) -> CanaryStatus:
        return self._status

    @workflow.signal(description=PAUSE_HELP)
    def pause(self, request: contract.ControlRequest | None = None) -> None:
        refusal = self._final_refusal() or (
            messages.already_paused(self._target) if self._status.paused else None
        )
        if self._refused(PAUSE, refusal):
            return
        self._status = self._status.model_copy(update={"paused": True})
        self._event(_with_reason(messages.paused(self._target), _reason(request)))

    @workflow.signal(description=RESUME_HELP)
    def resume(self, request: contract.ControlRequest | None = None) -> None:
        refusal = None if self._status.paused else messages.not_paused(self._target)
        if self._refused(RESUME, refusal):
            return
        self._status = self._status.model_copy(update={"paused": False})
        self._event(_with_reason(messages.resumed(self._target), _reason(request)))

    @workflow.update(description=PROMOTE_HELP)
    def promote(self, request: contract.ControlRequest | None = None) -> str:
        return self._accept_promotion(request)

    @promote.validator
    def _validate_promote(self, request: contract.ControlRequest | None = None) -> None:
        refusal = self._promote_refusal()
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.signal(name=PROMOTE, description=PROMOTE_HELP)
    def promote_signal(self, request: contract.ControlRequest | None = None) -> None:
        if not self._refused(PROMOTE, self._promote_refusal()):
            self._accept_promotion(request)

    @workflow.update(description=ABORT_HELP)
    def abort(self, request: contract.ControlRequest | None = None) -> str:
        return self._accept_abort(request)

    @abort.validator
    def _validate_abort(self, request: contract.ControlRequest | None = None) -> None:
        refusal = self._abort_refusal()
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.signal(name=ABORT, description=ABORT_HELP)
    def abort_signal(self, request: contract.ControlRequest | None = None) -> None:
        if not self._refused(ABORT, self._abort_refusal()):
            self._accept_abort(request)

    @workflow.signal(dynamic=True, description=UNKNOWN_SIGNAL_HELP)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        self._event(messages.unknown_signal(self._target, name, CONTROL_SIGNALS), warning=True)

    def _accept_promotion(self, request: contract.ControlRequest | None) -> str:
        self._promote_requested = True
        message = _with_reason(messages.promotion_requested(self._target), _reason(request))
        self._event(message)
        return message

    def _accept_abort(self, request: contract.ControlRequest | None) -> str:
        self._abort_reason = _reason(request) or "no reason given"
        return messages.rolling_back_abort(self._target, self._abort_reason)

    def _promote_refusal(self) -> str | None:
        if self._status.phase != Phase.PROGRESSING:
            return messages.promote_refused_phase(self._target, self._status.phase)
        if self._abort_reason is not None:
            return messages.being_rolled_back(self._target)
        return None

    @workflow.update(description=SUPERSEDE_HELP)
    def supersede(self, request: contract.SupersedeRequest) -> str:
        """Roll out another image instead: it is set on the canary at the next step, and the
        analysis starts over with all traffic on the primary."""
        message = messages.superseded(
            self._canary.target, self._new_image or self._status.image, request.image
        )
        self._new_image = request.image
        self._event(message)
        return message

    @supersede.validator
    def _validate_supersede(self, request: contract.SupersedeRequest) -> None:
        target = self._canary.target
        if not request.image.strip():
            raise ValueError("supersede needs an image")
        if not self._safe:
            raise ValueError(f"the rollout of {target} runs an earlier version: abort it first")
        phase = self._status.phase
        if phase.final or phase in (Phase.PROMOTING, Phase.FINALISING):
            raise ValueError(f"{target} is {phase}: too late for another image")
        if self._abort_reason is not None:
            raise ValueError(f"{target} is being rolled back")
        if request.image == (self._new_image or self._status.image):
            raise ValueError(f"{target} is already rolling out {request.image}")

    def _abort_refusal(self) -> str | None:
        phase = self._status.phase
        if phase.final or phase in (Phase.PROMOTING, Phase.FINALISING):
            return messages.too_late_to_abort(self._target, phase)
        if self._abort_reason is not None:
            return messages.already_rolling_back(self._target)
        return None

    def _final_refusal(self) -> str | None:
        phase = self._status.phase
        return messages.rollout_ended(self._target, phase) if phase.final else None

    def _refused(self, signal: str, refusal: str | None) -> bool:
        """Record why a signal is refused (it has no reply); True when it is."""
        if refusal is None:
            return False
        self._event(messages.signal_refused(self._target, signal, refusal), warning=True)
        return True

    @property
    def _target(self) -> str:
        return self._canary.target

    # -- stages ----------------------------------------------------------------------------

    async def _roll_out(self) -> None:
        if not self._resumes_after(contract.Stage.CONFIRM_ROLLOUT):
            await self._gate(WebhookType.CONFIRM_ROLLOUT, Phase.WAITING)
            await self._scale_up()
        pre_rollout = not (self._safe and self._canary.spec.skip_analysis)
        if pre_rollout and not self._resumes_after(contract.Stage.PRE_ROLLOUT):
            await self._pre_rollout()
        if not self._safe:
            if not self._canary.spec.skip_analysis:
                await self._analyse()
            if not self._promote_requested:
                await self._gate(WebhookType.CONFIRM_PROMOTION, Phase.WAITING_PROMOTION)
            await self._promote_unchecked()
            return
        skip = self._canary.spec.skip_analysis
        while True:
            try:
                if not skip and not self._resumes_after(contract.Stage.ANALYSIS):
                    await self._analyse()
                if not self._promote_requested and not skip:
                    await self._gate(WebhookType.CONFIRM_PROMOTION, Phase.WAITING_PROMOTION)
                await self._promote()
                return
            except NewRevision:
                self._resume = None  # the restarted analysis runs from its start
                await self._restart()

    async def _initialize(self, image: str | None) -> bool:
        """Create the primary and route to it; False when there is nothing to roll out."""
        target = self._canary.target
        state = await self._target_call(
            contract.INITIALIZE,
            contract.CanaryRequest(canary=self._target_spec),
            contract.TargetState,
        )
        self._primary_replicas = max(state.primary_replicas, 1)
        self._primary_snapshot = state.primary_snapshot
        if self._safe:
            await self._wait_until_ready(primary=True)
        await self._set_routes(ALL_TO_PRIMARY, force=True)
        revision = state.canary_revision
        if image is not None:
            request = contract.ImageRequest(canary=self._target_spec, image=image)
            revision = await self._target_call(contract.SET_CANARY_IMAGE, request, str)
        self._status = self._status.model_copy(
            update={"revision": revision, "phase": Phase.INITIALIZED}
        )
        if state.created_primary:
            self._event(messages.initialization_done(target))
        if revision == state.primary_revision:
            self._set_phase(Phase.SUCCEEDED)
            self._event(messages.nothing_to_roll_out(target))
            return False
        return True

    async def _scale_up(self) -> None:
        self._set_phase(Phase.PROGRESSING)
        self._event(messages.new_revision(self._canary.target))
        await self._scale_canary(self._primary_replicas)
        await self._wait_until_ready(primary=False)

    async def _take_new_image(self, restart: bool) -> None:
        """Set the image `supersede` asked for; with `restart`, start the analysis over
        (raises NewRevision)."""
        image, self._new_image = self._new_image, None
        assert image is not None
        request = contract.ImageRequest(canary=self._target_spec, image=image)
        revision = await self._target_call(contract.SET_CANARY_IMAGE, request, str)
        self._status = self._status.model_copy(update={"image": image})
        if restart:
            await self._apply(
                restart_analysis(self._canary, self._status, revision, workflow.now())
            )
        self._status = self._status.model_copy(update={"revision": revision})

    async def _restart(self) -> None:
        """After a new revision was detected (traffic is on the primary): run it as the canary."""
        self._promote_requested = False
        await self._settle_routes()
        await self._scale_canary(self._primary_replicas)
        await self._wait_until_ready(primary=False)

    async def _pre_rollout(self) -> None:
        """Run pre-rollout hooks until they pass; each failure is a failed check."""
        hooks = self._canary.spec.analysis.webhooks_of(WebhookType.PRE_ROLLOUT)
        retry = self._resuming(contract.Stage.PRE_ROLLOUT) is not None
        while hooks:
            if retry:
                await self._wait_interval("pre-rollout retry", contract.Stage.PRE_ROLLOUT)
                if self._new_image is not None:
                    await self._take_new_image(restart=False)
                    await self._restart()
            results = await self._webhooks([WebhookType.PRE_ROLLOUT])
            failure = next((hook for hook in results if not hook.ok), None)
            if failure is None:
                return
            message = messages.pre_rollout_failed(
                self._canary.target, failure.name, failure.message
            )
            muted = any(h.mute_alert for h in hooks if h.name == failure.name)
            await self._apply(
                failed_check(self._canary, self._status, message, workflow.now(), not muted)
            )
            retry = True

    async def _analyse(self) -> None:
        """Shift traffic step by step until the decision is to promote (or roll back)."""
        analysis = self._canary.spec.analysis
        legacy = not self._safe
        resumed = self._resuming(contract.Stage.ANALYSIS)
        if resumed is None:
            if self._safe and analysis.strategy == Strategy.CANARY:
                await self._gate(WebhookType.CONFIRM_TRAFFIC_INCREASE, Phase.PROGRESSING)
            await self._apply(start_analysis(self._canary, self._status, workflow.now(), legacy))
        steps = self._steps()
        step = 1 if resumed is None else resumed.step
        while not self._promote_requested:
            summary = f"analysis interval {step}/{steps}"
            await self._wait_interval(summary, contract.Stage.ANALYSIS, step=step)
            if self._new_image is not None:
                await self._take_new_image(restart=True)
            if self._promote_requested:
                break
            observation = await self._observe(f"analysis {step}/{steps}: webhooks and metrics")
            decision = decide(self._canary, self._status, observation, workflow.now(), legacy)
            await self._apply(decision)
            if decision.action == Action.PROMOTE:
                return
            step += 1

    async def _observe(self, summary: str, canary_only: bool = False) -> StepObservation:
        observation: StepObservation = await self._local_activity(
            contract.OBSERVE,
            contract.ObserveRequest(
                canary=self._observe_spec,
                phase=self._status.phase,
                checksum=self._status.revision or "",
                canary_only=canary_only,
            ),
            StepObservation,
            timeout=self._observe_timeout,
            summary=summary,
        )
        return observation

    async def _promote(self) -> None:
        """Copy the analysed revision to the primary, with traffic on ready workloads only.

        The canary must be ready: it serves while the primary is replaced. Where the primary
        is replaced in place, its share moves to the canary first. If the primary is not ready
        by the deadline, the canary keeps serving (PromotionFailed). With stepWeightPromotion
        the traffic then moves to the primary in analysed steps, which can roll back."""
        target = self._canary.target
        self._set_phase(Phase.PROMOTING)
        await self._wait_until_ready(primary=False)
        if traits(self._canary).primary_replaced_in_place:
            await self._set_routes(ALL_TO_CANARY)
            await self._settle_routes()
        primary = f"{self._canary.spec.target_ref.name}-primary.{self._canary.metadata.namespace}"
        self._event(messages.copying_template(target, primary))
        request = contract.PromoteRequest(canary=self._canary, revision=self._status.revision)
        try:
            promotion = await self._target_call(
                contract.PROMOTE_PRIMARY, request, contract.Promotion, summary="promote primary"
            )
        except StepFailed as failure:
            raise PromotionFailed(str(failure)) from None  # the primary may be half replaced
        if not promotion.copied:
            await self._apply(
                restart_analysis(
                    self._canary, self._status, promotion.canary_revision, workflow.now()
                )
            )
        self._primary_replaced = True
        try:
            await self._wait_ready(primary=True)
        except NotReady as not_ready:
            raise PromotionFailed(f"the primary is not ready: {not_ready}") from None
        if self._promotion_in_steps():
            await self._shift_to_primary()
        else:
            self._event(messages.routing_all_to_primary(target))
            try:
                await self._set_routes(ALL_TO_PRIMARY)
            except StepFailed as failure:
                raise PromotionFailed(str(failure)) from None
        self._set_phase(Phase.FINALISING)
        await self._settle_routes()
        try:
            await self._scale_canary(0)
        except StepFailed as failure:
            message = f"Promotion of {target} done, but the canary could not be scaled down: "
            self._event(message + failure.reason, warning=True)
        await self._webhooks(
            [WebhookType.POST_ROLLOUT], report_failures=True, phase=Phase.SUCCEEDED
        )
        self._set_phase(Phase.SUCCEEDED)
        self._event(messages.promotion_completed(target), kind=EventKind.PROMOTED)

    def _promotion_in_steps(self) -> bool:
        """stepWeightPromotion applies to an analysed promotion: skipAnalysis and a person's
        promote move all the traffic at once."""
        spec = self._canary.spec
        return (
            spec.analysis.step_weight_promotion is not None
            and not spec.skip_analysis
            and not self._promote_requested
        )

    async def _shift_to_primary(self) -> None:
        """stepWeightPromotion: each interval, analyse, then move another step of the traffic
        to the ready primary, until it has all of it. A failed analysis rolls back (RollBack),
        a new revision starts over (NewRevision)."""
        step = 1
        while True:
            await self._wait_interval(f"promotion interval {step}", None)
            observation = await self._observe(f"promotion {step}: webhooks and metrics")
            decision = promotion_step(self._canary, self._status, observation, workflow.now())
            await self._apply(decision)
            if decision.action == Action.PROMOTE:
                return
            step += 1

    async def _promotion_failed(self, detail: str) -> None:
        """The analysed canary keeps serving (all traffic when it is ready); the verdict is
        Failed. Never raises."""
        target = self._canary.target
        serving = messages.nothing_ready(target)
        try:
            readiness = await self._target_call(
                contract.READINESS,
                contract.ReadinessRequest(canary=self._target_spec, primary=False),
                contract.Readiness,
                summary="is the canary ready",
            )
            if readiness.ready:
                await self._set_routes(ALL_TO_CANARY)
                version = self._status.image or self._status.revision or "new version"
                serving = messages.canary_serves(target, version)
        except StepFailed as failure:
            serving = f"{serving} ({failure.reason})"
        reason = messages.promotion_failed(target, detail, serving)
        self._event(reason, warning=True, kind=EventKind.PROMOTION_FAILED)
        self._status = self._status.model_copy(update={"reason": reason})
        try:
            await self._webhooks(
                [WebhookType.POST_ROLLOUT], report_failures=True, phase=Phase.FAILED
            )
        except StepFailed as failure:
            self._event(f"Post-rollout hooks of {target} failed: {failure.reason}", warning=True)
        self._set_phase(Phase.FAILED)

    async def _restore_primary(self) -> None:
        """Give the primary back its template from before the rollout and wait until it is
        ready with it. Meanwhile the traffic is on the canary when it is ready; where the
        primary restarts in place it must be. PrimaryNotRestored when this cannot be done: the
        traffic then stays on the workload that serves, which the message names."""
        target = self._target
        ref = self._canary.spec.target_ref
        primary = f"{ref.name}-primary.{self._canary.metadata.namespace}"
        canary_ready = await self._ready(primary=False)
        if canary_ready:
            serving = messages.canary_serves(target, self._status.image or "the new version")
            try:
                await self._set_routes(ALL_TO_CANARY)
            except StepFailed as failure:
                detail = f"cannot route to the canary: {failure.reason}"
                unchanged = messages.traffic_unchanged(target)
                raise PrimaryNotRestored(
                    messages.primary_not_restored(target, detail, unchanged)
                ) from None
            await self._settle_routes()
        else:
            primary_ready = await self._ready(primary=True)
            if primary_ready:
                await self._set_routes(ALL_TO_PRIMARY)  # a canary that is not ready loses its share
            serving = (
                messages.primary_serves(target) if primary_ready else messages.nothing_ready(target)
            )
            if traits(self._canary).primary_replaced_in_place:
                version = self._status.image or "the new version"
                detail = (
                    f"the canary is not ready to serve while {primary} restarts: it keeps {version}"
                )
                raise PrimaryNotRestored(messages.primary_not_restored(target, detail, serving))
        if self._primary_snapshot is None:
            detail = f"the template {primary} had before the rollout is unknown"
            raise PrimaryNotRestored(messages.primary_not_restored(target, detail, serving))
        self._event(messages.restoring_primary(target, primary))
        request = contract.RestoreRequest(canary=self._canary, snapshot=self._primary_snapshot)
        try:
            await self._target_call(
                contract.RESTORE_PRIMARY, request, type(None), summary="restore the primary"
            )
        except StepFailed as failure:
            detail = f"cannot restore {primary}: {failure.reason}"
            raise PrimaryNotRestored(
                messages.primary_not_restored(target, detail, serving)
            ) from None
        try:
            await self._wait_ready(primary=True, abortable=False)
        except NotReady as not_ready:
            detail = f"{primary} is not ready with its previous template: {not_ready}"
            if not canary_ready:
                serving = messages.nothing_ready(target)
            raise PrimaryNotRestored(
                messages.primary_not_restored(target, detail, serving)
            ) from None

    async def _ready(self, primary: bool) -> bool:
        """One readiness read; a workload that cannot be read is not ready."""
        which = "primary" if primary else "canary"
        try:
            readiness = await self._target_call(
                contract.READINESS,
                contract.ReadinessRequest(canary=self._canary, primary=primary),
                contract.Readiness,
                summary=f"is the {which} ready",
            )
        except StepFailed:
            return False
        return bool(readiness.ready)

    async def _promote_unchecked(self) -> None:
        """Promotion as rollouts started before SAFE_ROLLOUT run it."""
        target = self._canary.target
        self._set_phase(Phase.PROMOTING)
        primary = f"{self._canary.spec.target_ref.name}-primary.{self._canary.metadata.namespace}"
        self._event(messages.copying_template(target, primary))
        request = contract.PromoteRequest(canary=self._canary)
        await self._activity(contract.PROMOTE_PRIMARY, request, contract.Promotion | None)
        await self._wait_until_ready(primary=True)
        self._event(messages.routing_all_to_primary(target))
        await self._set_routes(ALL_TO_PRIMARY)
        self._set_phase(Phase.FINALISING)
        await self._scale_canary(0)
        await self._webhooks([WebhookType.POST_ROLLOUT], report_failures=True)
        self._set_phase(Phase.SUCCEEDED)
        self._event(messages.promotion_completed(target), kind=EventKind.PROMOTED)

    async def _roll_back(self, reason: str) -> None:
        """Route everything to the primary and scale the canary down; never raises. A primary
        that took the new version first gets its previous template back (`_restore_primary`)."""
        target = self._canary.target
        if not any(event.message == reason for event in self._status.events):
            self._event(reason, warning=True, kind=EventKind.ROLLED_BACK)
        self._status = self._status.model_copy(update={"reason": reason})
        try:
            if self._primary_replaced:
                await self._restore_primary()
            await self._set_routes(ALL_TO_PRIMARY)
        except StepFailed as failure:
            # The canary keeps its share of traffic, so it keeps running too.
            message = f"Rollback of {target} incomplete: cannot route to the primary: "
            self._event(message + failure.reason, warning=True)
        except PrimaryNotRestored as failure:
            self._event(str(failure), warning=True, kind=EventKind.ROLLED_BACK)
            self._status = self._status.model_copy(update={"reason": str(failure)})
        else:
            try:
                if self._safe:
                    await self._settle_routes()
                await self._scale_canary(0)
            except StepFailed as failure:
                message = f"Rollback of {target} incomplete: cannot scale the canary down: "
                self._event(message + failure.reason, warning=True)
        self._event(messages.canary_failed(target), warning=True)
        # `rollback` hooks ask for a rollback; rollouts before SAFE_ROLLOUT called them after it.
        kinds = [WebhookType.POST_ROLLOUT]
        if not self._safe:
            kinds.insert(0, WebhookType.ROLLBACK)
        try:
            await self._webhooks(kinds, report_failures=True, phase=Phase.FAILED)
        except StepFailed as failure:
            self._event(f"Rollback hooks of {target} failed: {failure.reason}", warning=True)
        self._status = self._status.model_copy(update={"phase": Phase.FAILED})

    # -- pieces ----------------------------------------------------------------------------

    async def _gate(self, kind: WebhookType, waiting_phase: Phase) -> None:
        """Hold until every hook of this confirm-* kind answers 2xx; a refusal is no failure."""
        if not self._canary.spec.analysis.webhooks_of(kind):
            return
        stage = contract.Stage(kind.value)
        resumed = self._resuming(stage)
        previous_phase = self._status.phase
        if resumed is not None and resumed.gate_phase is not None:
            previous_phase = resumed.gate_phase
        announced = resumed is not None
        rollback_hooks = {
            hook.name for hook in self._canary.spec.analysis.webhooks_of(WebhookType.ROLLBACK)
        }
        kinds = [kind, WebhookType.ROLLBACK] if self._safe and rollback_hooks else [kind]
        local = False
        while True:
            if announced:
                summary = f"waiting for {kind}"
                await self._wait_interval(summary, stage, gate_phase=previous_phase)
                if self._new_image is not None:
                    await self._take_new_image(restart=kind != WebhookType.CONFIRM_ROLLOUT)
                if self._safe and kind == WebhookType.CONFIRM_PROMOTION:
                    # The analysis goes on while promotion waits for approval: it can still fail.
                    observation = await self._observe(f"analysis while waiting for {kind}")
                    await self._apply(
                        judge(self._canary, self._status, observation, workflow.now())
                    )
                local = local or (self._safe and workflow.patched(GATE_HOOKS_LOCAL))
            results = await self._webhooks(kinds, local=local)
            asked = next((h for h in results if h.ok and h.name in rollback_hooks), None)
            if asked is not None and len(kinds) > 1:
                raise RollBack(messages.rolling_back_hook(self._canary.target, asked.name))
            gates = [hook for hook in results if hook.name not in rollback_hooks or len(kinds) == 1]
            refused = next((hook for hook in gates if not hook.ok), None)
            if refused is None:
                if announced:
                    self._set_phase(previous_phase)
                return
            if not announced:
                self._set_phase(waiting_phase)
                waiting = {
                    WebhookType.CONFIRM_PROMOTION: messages.waiting_for_promotion_approval,
                    WebhookType.CONFIRM_TRAFFIC_INCREASE: messages.waiting_for_traffic_approval,
                }.get(kind, messages.waiting_for_approval)
                self._event(waiting(self._canary.target, refused.name), kind=EventKind.WAITING)
                announced = True

    async def _wait_until_ready(self, primary: bool) -> None:
        """Wait for readiness; past the progress deadline, roll back."""
        try:
            await self._wait_ready(primary)
        except NotReady as not_ready:
            raise RollBack(
                messages.rolling_back_deadline(self._canary.target, str(not_ready))
            ) from None

    async def _wait_ready(self, primary: bool, abortable: bool = True) -> None:
        """Poll readiness until ready; NotReady past the progress deadline. An accepted abort
        ends the wait (RollBack) unless it is not `abortable` (a rollback is under way)."""
        deadline = workflow.now() + timedelta(seconds=self._canary.spec.progress_deadline_seconds)
        poll = min(timedelta(seconds=self._canary.spec.analysis.interval), READY_POLL_MAX)
        which = "primary" if primary else "canary"
        request = contract.ReadinessRequest(canary=self._target_spec, primary=primary)
        while True:
            readiness = await self._target_call(
                contract.READINESS, request, contract.Readiness, summary=f"is the {which} ready"
            )
            if readiness.ready:
                return
            if self._safe and not primary and self._status.canary_weight > 0:
                await self._set_routes(ALL_TO_PRIMARY)  # a canary that is not ready loses its share
            if workflow.now() >= deadline:
                raise NotReady(readiness.message)
            if abortable:
                self._raise_if_aborted()
            await self._publish()
            await workflow.sleep(poll, summary=f"waiting for the {which} to be ready")

    async def _wait_interval(
        self,
        summary: str,
        stage: contract.Stage | None,
        step: int = 1,
        gate_phase: Phase | None = None,
    ) -> None:
        """One analysis interval; an abort or promote cuts it short, a pause extends it.

        A long history continues as new here; the next run starts with this same wait at
        `stage` (analysis `step`; at a gate, `gate_phase` is the phase to go back to). No
        `stage` (a stepWeightPromotion step: at most 100 of them) never continues as new."""
        interval = timedelta(seconds=self._canary.spec.analysis.interval)
        while True:
            self._raise_if_aborted()
            if stage is not None and self._history_full():
                await self._continue_as_new(stage, step, gate_phase)
            await self._publish()
            try:
                await workflow.wait_condition(
                    lambda: self._interrupted or self._status.paused,
                    timeout=interval,
                    timeout_summary=summary,
                )
            except TimeoutError:
                if not self._status.paused:
                    return
            self._raise_if_aborted()
            if self._promote_requested or self._new_image is not None:
                return
            await self._publish()
            await self._while_paused(interval)

    async def _while_paused(self, interval: timedelta) -> None:
        """Hold while paused. A pause stops the analysis, not the safety checks: while the
        canary has traffic, its readiness and revision are still read every interval, so a
        canary that stops being ready loses its share (rollouts without CHECKS_WHILE_PAUSED
        just hold)."""

        def resumed() -> bool:
            return self._interrupted or not self._status.paused

        if not (self._safe and workflow.patched(CHECKS_WHILE_PAUSED)):
            await workflow.wait_condition(resumed)
            return
        while not resumed():
            try:
                await workflow.wait_condition(
                    resumed, timeout=interval, timeout_summary="paused: checking the canary"
                )
            except TimeoutError:
                if self._status.canary_weight > 0 or self._status.mirror:
                    observation = await self._observe("paused: is the canary ready", True)
                    now = workflow.now()
                    await self._apply(decide(self._canary, self._status, observation, now))

    def _history_full(self) -> bool:
        """True when this run should hand over to a new one (rollouts before SAFE_ROLLOUT
        never do: their next run would take the new code paths)."""
        if not self._safe or self._interrupted:
            return False
        info = workflow.info()
        full = (
            info.get_current_history_length() >= self.continue_as_new_at_events
            or info.is_continue_as_new_suggested()
        )
        return full and workflow.patched(CONTINUE_AS_NEW)

    async def _continue_as_new(
        self, stage: contract.Stage, step: int, gate_phase: Phase | None
    ) -> NoReturn:
        await workflow.wait_condition(workflow.all_handlers_finished)
        resume = contract.ContinuedRollout(
            stage=stage,
            step=step,
            gate_phase=gate_phase,
            status=self._status,
            primary_replicas=self._primary_replicas,
            promote_requested=self._promote_requested,
            abort_reason=self._abort_reason,
            new_image=self._new_image,
            unsent=self._unsent,
            unsent_hook_events=self._unsent_hook_events,
            published={k: v for k, v in self._published.items() if isinstance(v, str | int)},
        )
        workflow.continue_as_new(
            contract.RolloutRequest(canary=self._canary, image=self._image, resume=resume)
        )

    def _restore(self, resume: contract.ContinuedRollout) -> None:
        """Take over the state of the run this one continues."""
        self._status = resume.status
        self._primary_replicas = resume.primary_replicas
        self._promote_requested = resume.promote_requested
        self._abort_reason = resume.abort_reason
        self._new_image = resume.new_image
        self._unsent = list(resume.unsent)
        self._unsent_hook_events = list(resume.unsent_hook_events)
        self._published = dict(resume.published)

    def _resuming(self, stage: contract.Stage) -> contract.ContinuedRollout | None:
        """The carried state when this run continues a rollout waiting at `stage` (once)."""
        resume = self._resume
        if resume is None or resume.stage != stage:
            return None
        self._resume = None
        return resume

    def _resumes_after(self, stage: contract.Stage) -> bool:
        """True when this run continues a rollout that was already past `stage`."""
        return self._resume is not None and self._resume.stage.order > stage.order

    async def _settle_routes(self) -> None:
        """Give the router time to apply new weights before a workload that lost them stops."""
        seconds = traits(self._canary).route_settle_seconds
        if seconds > 0:
            await workflow.sleep(
                timedelta(seconds=seconds), summary="let the router apply the weights"
            )

    @property
    def _interrupted(self) -> bool:
        return (
            self._abort_reason is not None or self._promote_requested or self._new_image is not None
        )

    def _raise_if_aborted(self) -> None:
        if self._abort_reason is not None:
            raise RollBack(messages.rolling_back_abort(self._canary.target, self._abort_reason))

    async def _scale_canary(self, replicas: int) -> None:
        request = contract.ScaleRequest(canary=self._target_spec, replicas=replicas)
        await self._target_call(
            contract.SCALE_CANARY, request, type(None), summary=f"scale canary to {replicas}"
        )

    async def _set_routes(self, routes: Routes, force: bool = False) -> None:
        unchanged = (
            routes.primary_weight == self._status.primary_weight
            and routes.canary_weight == self._status.canary_weight
            and routes.mirror == self._status.mirror
        )
        if unchanged and not force:
            return
        request = contract.RoutesRequest(canary=self._target_spec, routes=routes)
        summary = f"set weight {routes.canary_weight}"
        unsent, hook_events = self._unsent, self._unsent_hook_events
        notify = self._take_notifications() if self._fewer_round_trips else None
        try:
            if notify is None:
                await self._local_activity(
                    contract.SET_ROUTES, request, type(None), timeout=KUBE_TIMEOUT, summary=summary
                )
            else:
                await self._local_activity(
                    contract.SET_ROUTES_AND_NOTIFY,
                    contract.RoutesAndNotifyRequest(routes=request, notify=notify),
                    type(None),
                    timeout=KUBE_TIMEOUT + NOTIFY_TIMEOUT,
                    summary=f"{summary}, notify",
                )
        except StepFailed as failure:
            # Nothing was sent (the routes come first): the next wait sends it.
            self._unsent, self._unsent_hook_events = unsent, hook_events
            raise StepFailed(contract.SET_ROUTES, failure.reason) from None
        self._status = self._status.model_copy(
            update={
                "primary_weight": routes.primary_weight,
                "canary_weight": routes.canary_weight,
                "mirror": routes.mirror,
            }
        )

    async def _webhooks(
        self,
        kinds: list[WebhookType],
        report_failures: bool = False,
        phase: Phase | None = None,
        local: bool = False,
    ) -> list[Any]:
        """Call the hooks of `kinds`; their payload names `phase` (default: the current one).
        `local`: as a local activity (one marker event instead of three activity events and a
        workflow task)."""
        hooks = [h for h in self._canary.spec.analysis.webhooks if h.type in kinds]
        if not hooks:
            return []
        request = contract.WebhooksRequest(
            canary=self._webhook_spec(kinds),
            kinds=kinds,
            phase=phase or self._status.phase,
            checksum=self._status.revision or "",
        )
        timeout = timedelta(seconds=sum(hook.longest_seconds for hook in hooks) + 30)
        call = self._local_activity if local else self._activity
        result = await call(
            contract.CALL_WEBHOOKS,
            request,
            contract.WebhooksResult,
            timeout=timeout,
            summary=f"{', '.join(kinds)} webhooks",
        )
        if report_failures:
            for hook in result.webhooks:
                if not hook.ok:
                    self._event(
                        messages.hook_failed(kinds[0].value, hook.name, hook.message),
                        warning=True,
                    )
        return list(result.webhooks)

    @functools.cached_property
    def _observe_spec(self) -> Canary:
        """What `observe` gets of the spec (a local activity: its input is not in the history,
        but it is encoded and decoded at every step)."""
        return activity_specs.for_observe(self._canary)

    @functools.cached_property
    def _notify_spec(self) -> Canary:
        """What `notify` gets of the spec."""
        return activity_specs.for_notify(self._canary)

    def _webhook_spec(self, kinds: list[WebhookType]) -> Canary:
        """What `call_webhooks` gets of the spec for these kinds of hooks."""
        key = tuple(kinds)
        if key not in self._webhook_specs:
            self._webhook_specs[key] = activity_specs.for_webhooks(self._canary, kinds)
        return self._webhook_specs[key]

    async def _apply(self, decision: Decision) -> None:
        """Take the decision's status and log its new events; roll back or set its routes."""
        current = self._status
        new_events = _new_events(current.events, decision.status.events)
        self._status = decision.status.model_copy(
            update={
                "primary_weight": current.primary_weight,
                "canary_weight": current.canary_weight,
                "mirror": current.mirror,
            }
        )
        for event in new_events:
            self._record(event)
        if decision.routes is not None:
            await self._set_routes(decision.routes)
        if decision.action == Action.ROLLBACK:
            raise RollBack(decision.status.reason or "rollback")
        if decision.action == Action.RESTART:
            raise NewRevision()

    def _steps(self) -> int:
        analysis = self._canary.spec.analysis
        return analysis.iterations or len(analysis.weights)

    @functools.cached_property
    def _observe_timeout(self) -> timedelta:
        hooks = self._canary.spec.analysis.webhooks_of(WebhookType.ROLLOUT)
        gates = self._canary.spec.analysis.webhooks_of(WebhookType.CONFIRM_TRAFFIC_INCREASE)
        asks = self._canary.spec.analysis.webhooks_of(WebhookType.ROLLBACK)
        seconds = sum(hook.longest_seconds for hook in [*hooks, *gates, *asks])
        return timedelta(seconds=seconds + 30 * (1 + len(self._canary.spec.analysis.metrics)))

    def _set_phase(self, phase: Phase) -> None:
        self._status = self._status.model_copy(update={"phase": phase})

    def _event(self, message: str, warning: bool = False, kind: EventKind | None = None) -> None:
        event = Event(time=workflow.now(), message=message, warning=warning, kind=kind)
        self._status = self._status.with_events(event)
        self._record(event)

    def _record(self, event: Event) -> None:
        """Log an event that is already in the status; queue it for alerts if it has a kind,
        and for `event` hooks."""
        _log(event)
        if event.kind is not None:
            self._unsent.append(event)
        if self._safe and self._canary.spec.analysis.webhooks_of(WebhookType.EVENT):
            self._unsent_hook_events.append(event)

    async def _publish(self) -> None:
        """Before each wait: show the status in the Web UI and send what happened since."""
        workflow.set_current_details(status_markdown(self._canary, self._status))
        self._upsert_search_attributes()
        self._metrics.publish(self._status)
        request = self._take_notifications()
        if request is None:
            return
        try:
            await self._local_activity(
                contract.NOTIFY, request, type(None), timeout=NOTIFY_TIMEOUT, summary="notify"
            )
        except StepFailed as failure:
            workflow.logger.warning("notifications not sent: %s", failure)

    def _take_notifications(self) -> contract.NotifyRequest | None:
        """What happened since the last notification, for the alert providers (events with a
        kind, when the rollout has alerts or Kubernetes Events) and the `event` hooks; None
        when there is nothing to send."""
        unsent, self._unsent = self._unsent, []
        hook_events, self._unsent_hook_events = self._unsent_hook_events, []
        spec = self._canary.spec
        alerted = bool(spec.analysis.alerts) or traits(self._canary).kubernetes_events
        notifications = [
            contract.Notification(
                kind=event.kind,
                severity=event.kind.severity,
                message=event.message,
                time=event.time,
            )
            for event in (unsent if alerted else [])
            if event.kind is not None
        ]
        if not notifications and not hook_events:
            return None
        return contract.NotifyRequest(
            canary=self._notify_spec,
            notifications=notifications,
            events=[
                contract.EventNotice(time=e.time, message=e.message, warning=e.warning)
                for e in hook_events
            ],
            phase=self._status.phase,
            checksum=self._status.revision or "",
        )

    def _upsert_search_attributes(self) -> None:
        """Keep the rollout's search attributes current, if it was started with them."""
        if workflow.info().typed_search_attributes.get(search_attributes.TARGET) is None:
            return
        wanted: list[SearchAttributeUpdate[Any]] = [
            search_attributes.PHASE.value_set(self._status.phase.value),
            search_attributes.WEIGHT.value_set(self._status.canary_weight),
            search_attributes.FAILED_CHECKS.value_set(self._status.failed_checks),
        ]
        if self._status.image is not None:
            wanted.append(search_attributes.IMAGE.value_set(self._status.image))
        changed = [item for item in wanted if self._published.get(item.key.name) != item.value]
        if changed:
            workflow.upsert_search_attributes(changed)
            self._published.update({item.key.name: item.value for item in changed})

    async def _activity(
        self,
        name: str,
        arg: Any,
        result_type: Any,
        timeout: timedelta = KUBE_TIMEOUT,
        summary: str | None = None,
    ) -> Any:
        try:
            return await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=timeout,
                retry_policy=RETRY_IO,
                summary=summary or name.replace("_", " "),
            )
        except ActivityError as error:
            raise StepFailed(name, _cause(error)) from None

    async def _target_call(
        self, name: str, arg: Any, result_type: Any, summary: str | None = None
    ) -> Any:
        """A short call to the target: a local activity in rollouts with FEWER_ROUND_TRIPS, an
        activity in those started before."""
        if self._fewer_round_trips:
            summary = summary or name.replace("_", " ")
            return await self._local_activity(name, arg, result_type, KUBE_TIMEOUT, summary)
        return await self._activity(name, arg, result_type, summary=summary)

    async def _local_activity(
        self, name: str, arg: Any, result_type: Any, timeout: timedelta, summary: str
    ) -> Any:
        try:
            return await workflow.execute_local_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=timeout,
                retry_policy=RETRY_IO,
                summary=summary,
            )
        except ActivityError as error:
            raise StepFailed(name, _cause(error)) from None
        except ApplicationError as error:
            # A local activity's final failure arrives as the activity's own error.
            raise StepFailed(name, error.message) from None


def _new_events(before: list[Event], after: list[Event]) -> list[Event]:
    """The events of `after` not in `before` (by equality). A decision keeps the status's
    events as they are and appends its own, so most of `after` is the very objects of `before`:
    only the others are compared, as pydantic's equality of models is slow."""
    kept = {id(event) for event in before}
    return [event for event in after if id(event) not in kept and event not in before]


def _reason(request: contract.ControlRequest | None) -> str:
    return request.reason if request is not None else ""


def _with_reason(message: str, reason: str) -> str:
    return f"{message}: {reason}" if reason else message


def _cause(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause) if cause else str(error)


def _log(event: Event) -> None:
    if event.warning:
        workflow.logger.warning(event.message)
    else:
        workflow.logger.info(event.message)
