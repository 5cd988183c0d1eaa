/**
 * A Check's deadline as the signal the pipeline waits on: it fires a little
 * before Envoy's own deadline, or when Envoy cancels the call. Armed lazily:
 * most Checks are answered from the cache without waiting on anything, and
 * reading `aborted` only looks at the call and the clock; a timer (a place on
 * the deadline wheel) and a 'cancelled' listener are made only once something
 * listens.
 */
import { Cancellation, CANCELLED, DEADLINE_REACHED } from '../introspection/cancellation.js';
import { deadlineWheel, type DeadlineWheel, type WheelEntry } from './deadline-wheel.js';

/**
 * Time kept back from Envoy's deadline to encode and send the answer, and to
 * absorb transit: an answer that arrives after Envoy's own timer is an error
 * to Envoy (fail open with failure_mode_allow). A fifth of the time left, at
 * most DEADLINE_MARGIN_MS, so short deadlines keep most of theirs. The wheel
 * adds to it what event-loop lag and a burst of Checks due together take.
 */
export const DEADLINE_MARGIN_MS = 50;

/** The part of a grpc-js server call the deadline watches. */
export interface CancellableCall {
  readonly cancelled: boolean;
  getDeadline(): Date | number;
  on(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
}

export class CheckDeadline extends Cancellation {
  readonly #call: CancellableCall;
  /** When the signal fires (epoch ms); Infinity without a deadline. */
  readonly #abortAt: number;
  readonly #wheel: DeadlineWheel;
  #entry: WheelEntry | undefined;
  #onCancel: (() => void) | undefined;

  constructor(call: CancellableCall, now = Date.now(), wheel = deadlineWheel) {
    super();
    this.#call = call;
    this.#wheel = wheel;
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    if (Number.isFinite(deadlineMs)) {
      const remaining = deadlineMs - now;
      this.#abortAt = now + Math.max(0, remaining - Math.min(DEADLINE_MARGIN_MS, remaining / 5));
    } else {
      this.#abortAt = Infinity;
    }
  }

  override get aborted(): boolean {
    return super.aborted || this.#poll();
  }

  /** DEADLINE_REACHED when time ran out; something else when Envoy cancelled the call. */
  override get reason(): unknown {
    this.#poll();
    return super.reason;
  }

  override addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void {
    if (this.aborted) return;
    if (this.#onCancel === undefined) {
      this.#onCancel = () => this.abort(CANCELLED);
      this.#call.on('cancelled', this.#onCancel);
      if (this.#abortAt !== Infinity) this.#entry = this.#wheel.add(this.#abortAt, () => this.abort(DEADLINE_REACHED));
    }
    super.addEventListener(type, listener, options);
  }

  /** The call is answered: stop the timer and the listener, if they were ever made. */
  dispose(): void {
    if (this.#entry !== undefined) this.#wheel.remove(this.#entry);
    if (this.#onCancel !== undefined) this.#call.removeListener('cancelled', this.#onCancel);
  }

  /** Fire now if the call was cancelled or the time has come (nothing may be listening to tell us); whether it fired. */
  #poll(): boolean {
    if (super.aborted) return true;
    if (this.#call.cancelled) this.abort(CANCELLED);
    else if (this.#abortAt <= Date.now()) this.abort(DEADLINE_REACHED);
    return super.aborted;
  }
}
