/**
 * Server-supplied DPoP nonces (RFC 9449 section 9): a proof must carry a
 * nonce this service handed out recently, which bounds how long before its use
 * a proof can be made (a client's clock, or a stolen signing oracle, cannot
 * pre-compute proofs for later). Stateless: the nonce of a time slot is an
 * HMAC of the slot under a secret, so replicas that share the secret (derived
 * from redis.keySecret) accept each other's nonces, and nothing is stored.
 */
import { createHmac } from 'node:crypto';

export interface DpopNonceOptions {
  secret: Buffer;
  /** Seconds a nonce is handed out; it is accepted for one more slot after. */
  lifetimeSeconds: number;
  clock?: { now(): number };
}

export class DpopNonces {
  readonly #secret: Buffer;
  readonly #slotMs: number;
  readonly #clock: { now(): number };
  /** The last two slots' nonces, computed once each. */
  #slot = Number.NaN;
  #current = '';
  #previous = '';

  constructor(options: DpopNonceOptions) {
    this.#secret = options.secret;
    this.#slotMs = options.lifetimeSeconds * 1000;
    this.#clock = options.clock ?? Date;
  }

  /** The nonce to hand out now (DPoP-Nonce). */
  current(): string {
    this.#advance();
    return this.#current;
  }

  /** Whether a proof's nonce claim is this slot's or the one before. */
  accepts(nonce: unknown): boolean {
    if (typeof nonce !== 'string') return false;
    this.#advance();
    return nonce === this.#current || nonce === this.#previous;
  }

  #advance(): void {
    const slot = Math.floor(this.#clock.now() / this.#slotMs);
    if (slot === this.#slot) return;
    this.#previous = slot === this.#slot + 1 ? this.#current : this.#of(slot - 1);
    this.#current = this.#of(slot);
    this.#slot = slot;
  }

  #of(slot: number): string {
    return createHmac('sha256', this.#secret).update(`dpop nonce ${slot}`).digest('base64url');
  }
}
