/**
 * A bound on calls under way to one endpoint. A call beyond the bound waits,
 * first come first served, for at most `queueTimeout` ms, and never past its
 * caller's signal; then it is refused, so a slow authorization server makes
 * Checks fail closed quickly instead of piling up without end.
 */
import type { CallerSignal } from './cancellation.js';

/** Give the slot back; calling it more than once is harmless. */
export type Release = () => void;

/** A slot, or why none was had: 'busy' (waited queueTimeout in vain) or 'aborted' (the signal fired). */
export type Acquired = { ok: true; release: Release } | { ok: false; reason: 'busy' | 'aborted' };

interface Waiter {
  grant(): void;
}

export class InFlightLimit {
  readonly #max: number;
  readonly #queueTimeout: number;
  readonly #waiters: Waiter[] = [];
  #inFlight = 0;

  /**
   * @param max calls allowed under way at once
   * @param queueTimeout milliseconds a call beyond `max` waits for a slot; 0 refuses at once
   */
  constructor(max: number, queueTimeout: number) {
    this.#max = max;
    this.#queueTimeout = queueTimeout;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** A slot at once when one is free (no promise), else a promise of one. */
  acquire(signal?: CallerSignal): Promise<Acquired> | Acquired {
    if (signal?.aborted) return { ok: false, reason: 'aborted' };
    if (this.#inFlight < this.#max) {
      this.#inFlight += 1;
      return { ok: true, release: this.#releaser() };
    }
    if (this.#queueTimeout <= 0) return { ok: false, reason: 'busy' };
    return new Promise<Acquired>((resolve) => {
      const finish = (result: Acquired) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        resolve(result);
      };
      // The slot is handed over by release(): inFlight stays counted for this waiter.
      const waiter: Waiter = { grant: () => finish({ ok: true, release: this.#releaser() }) };
      const onAbort = () => finish({ ok: false, reason: 'aborted' });
      const timer = setTimeout(() => finish({ ok: false, reason: 'busy' }), this.#queueTimeout);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters[0];
      if (next) next.grant();
      else this.#inFlight -= 1;
    };
  }
}
