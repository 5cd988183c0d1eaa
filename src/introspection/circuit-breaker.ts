/**
 * A per-endpoint circuit breaker as a pure state machine: no timers, no I/O;
 * time comes from the injected clock and is read only when asked.
 *
 *   closed --(`failures` consecutive failed calls)--> open
 *   open --(`resetTimeout` ms later, next call)--> half_open: that call is the one probe
 *   half_open --(probe succeeds)--> closed;  --(probe fails)--> open again
 *
 * While open, and while a probe is under way, calls are refused at once.
 */
import type { Clock } from './endpoint-client.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

/** What a call was admitted as: an ordinary call, or the one probe of a half-open circuit. */
export type Permit = 'call' | 'probe';

export interface CircuitBreakerOptions {
  /** Consecutive failed calls that open the circuit; 0 never opens it. */
  failures: number;
  /** Milliseconds the circuit stays open before one probe may go through. */
  resetTimeout: number;
  clock?: Clock;
  /** Told of every change of state. */
  onStateChange?: (state: CircuitState) => void;
}

export class CircuitBreaker {
  readonly #failures: number;
  readonly #resetTimeout: number;
  readonly #clock: Clock;
  readonly #onStateChange: ((state: CircuitState) => void) | undefined;
  #state: CircuitState = 'closed';
  #consecutive = 0;
  #openedAt = 0;
  #probing = false;

  constructor(options: CircuitBreakerOptions) {
    this.#failures = options.failures;
    this.#resetTimeout = options.resetTimeout;
    this.#clock = options.clock ?? Date;
    this.#onStateChange = options.onStateChange;
  }

  /** The state as a caller would find it now: an open circuit past its reset timeout reads half_open. */
  get state(): CircuitState {
    if (this.#state === 'open' && this.#clock.now() - this.#openedAt >= this.#resetTimeout) return 'half_open';
    return this.#state;
  }

  /** May a call go to the endpoint? null: no, fail fast. Every permit must be settled once. */
  admit(): Permit | null {
    switch (this.state) {
      case 'closed':
        return 'call';
      case 'open':
        return null;
      case 'half_open':
        if (this.#probing) return null;
        this.#probing = true;
        this.#set('half_open');
        return 'probe';
    }
  }

  /** The endpoint answered. */
  succeeded(permit: Permit): void {
    if (permit === 'probe') {
      this.#probing = false;
      this.#consecutive = 0;
      this.#set('closed');
    } else if (this.#state === 'closed') {
      this.#consecutive = 0;
    }
    // An ordinary call admitted before the circuit opened proves little: the probe decides.
  }

  /** The endpoint could not be reached, did not answer in time, or answered with a server error. */
  failed(permit: Permit): void {
    if (permit === 'probe') {
      this.#probing = false;
      this.#open();
    } else if (this.#state === 'closed') {
      this.#consecutive += 1;
      if (this.#failures > 0 && this.#consecutive >= this.#failures) this.#open();
    }
  }

  /** The call ended without telling anything about the endpoint (its caller left, it never started). */
  abandoned(permit: Permit): void {
    if (permit === 'probe') this.#probing = false;
  }

  #open(): void {
    this.#openedAt = this.#clock.now();
    this.#consecutive = 0;
    this.#set('open');
  }

  #set(state: CircuitState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#onStateChange?.(state);
  }
}
