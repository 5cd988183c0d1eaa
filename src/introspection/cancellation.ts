/**
 * Cancellation on the cold path without AbortController: a Check waiting on
 * an introspection, the call shared by its waiters, and the endpoint client's
 * attempts each hold one of these. Node's EventTarget-based AbortSignal costs
 * several microseconds per controller, listener and abort, and the normal
 * path (an answer in time) never aborts anything: here, making one is an
 * object, listening is an array push, and only an actual abort calls anyone.
 */

/**
 * What the introspector and the endpoint client need of a caller's deadline:
 * the reading half of an AbortSignal (which is one, so tests and other callers
 * may pass a real signal), implemented cheaply by Cancellation.
 */
export interface CallerSignal {
  readonly aborted: boolean;
  /** Why it fired: DEADLINE_REACHED when the caller ran out of time (not when it went away). */
  readonly reason?: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * The reason a caller's signal fires with when its deadline came, as opposed
 * to the caller going away: handed on to the endpoint call when the last
 * waiter leaves, so the endpoint client can tell "no answer in time" (a sign
 * the endpoint hangs) from "nobody wants the answer any more".
 */
export const DEADLINE_REACHED = Symbol('the caller\'s deadline');

/** The reason of an abort that names none: the caller went away. */
export const CANCELLED = Symbol('cancelled');

/**
 * A signal and its controller in one: fires once, listeners are called once
 * each (as with `{ once: true }`), and a listener added after it fired is
 * never called (as with AbortSignal).
 */
export class Cancellation implements CallerSignal {
  #reason: unknown = undefined;
  #fired = false;
  #listeners: Array<() => void> | undefined;

  get aborted(): boolean {
    return this.#fired;
  }

  get reason(): unknown {
    return this.#reason;
  }

  /** Listeners are always called once; `options` is there to take an AbortSignal's arguments. */
  addEventListener(_type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (this.#fired) return;
    if (this.#listeners === undefined) this.#listeners = [listener];
    else this.#listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const listeners = this.#listeners;
    if (listeners === undefined) return;
    const at = listeners.indexOf(listener);
    if (at >= 0) listeners.splice(at, 1);
  }

  /** Fire, once: later calls change nothing. */
  abort(reason: unknown = CANCELLED): void {
    if (this.#fired) return;
    this.#fired = true;
    this.#reason = reason;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners === undefined) return;
    // One listener's failure (a bug) must not leave the others waiting: all are told, then it is thrown.
    let failure: { error: unknown } | undefined;
    for (const listener of listeners) {
      try {
        listener();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure !== undefined) throw failure.error;
  }
}
