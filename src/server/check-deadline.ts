/**
 * A Check's deadline as the signal the pipeline waits on: it fires a little
 * before Envoy's own deadline, or when Envoy cancels the call. Made lazily:
 * most Checks are answered from the cache without waiting on anything, and
 * an AbortController, a timer and a 'cancelled' listener per Check would cost
 * more than the rest of such an answer.
 */
import { DEADLINE_REACHED, type CallerSignal } from '../introspection/introspector.js';
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

export class CheckDeadline implements CallerSignal {
  readonly #call: CancellableCall;
  /** When the signal fires (epoch ms); Infinity without a deadline. */
  readonly #abortAt: number;
  #controller: AbortController | undefined;
  readonly #wheel: DeadlineWheel;
  #entry: WheelEntry | undefined;
  #onCancel: (() => void) | undefined;

  constructor(call: CancellableCall, now = Date.now(), wheel = deadlineWheel) {
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

  get aborted(): boolean {
    return this.#signal().aborted;
  }

  /** DEADLINE_REACHED when time ran out; something else when Envoy cancelled the call. */
  get reason(): unknown {
    return this.#signal().reason;
  }

  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void {
    this.#signal().addEventListener(type, listener, options);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    this.#controller?.signal.removeEventListener(type, listener);
  }

  /** The call is answered: stop the timer and the listener, if they were ever made. */
  dispose(): void {
    if (this.#entry !== undefined) this.#wheel.remove(this.#entry);
    if (this.#onCancel !== undefined) this.#call.removeListener('cancelled', this.#onCancel);
  }

  #signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      if (this.#call.cancelled) {
        controller.abort();
      } else if (this.#abortAt <= Date.now()) {
        controller.abort(DEADLINE_REACHED);
      } else {
        this.#onCancel = () => controller.abort();
        this.#call.on('cancelled', this.#onCancel);
        if (this.#abortAt !== Infinity) this.#entry = this.#wheel.add(this.#abortAt, () => controller.abort(DEADLINE_REACHED));
      }
    }
    return this.#controller.signal;
  }
}
