/**
 * Where the jti of every accepted DPoP proof is remembered until the proof
 * would be stale anyway (RFC 9449 section 11.1): in memory, bounded, and, when
 * Redis is configured, in Redis too, so a proof replayed at another replica is
 * caught. Redis keys are HMACs under a key derived from the deployment secret
 * (sealed-entry.ts), so a dump reveals neither keys nor jti values, and nobody
 * without the secret can plant the key of a proof not yet sent.
 */
import { createHash, createHmac } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { connectRedis, type RedisTarget } from '../introspection/redis-connection.js';
import { sharedKeys } from '../introspection/sealed-entry.js';

export interface ReplayStore {
  /**
   * Records a proof's use; false when it was recorded before (a replay).
   * @param key the proof's key thumbprint and jti, as replayId makes it
   * @param until epoch ms after which the proof is refused as stale, so the record may go
   */
  claim(key: string, until: number): Promise<boolean>;
  close(): Promise<void>;
}

/** One id per key and jti: a jti is only unique for the key that signed it. */
export function replayId(thumbprint: string, jti: string): string {
  return createHash('sha256').update(thumbprint).update('\0').update(jti).digest('base64url');
}

export interface MemoryReplayOptions {
  maxEntries: number;
  clock?: { now(): number };
  /** Told when an unexpired record had to go to make room: a replay of that proof here would pass. */
  onOverflow?: () => void;
}

/**
 * Records in insertion order, each with its end. Full of live records, the
 * oldest goes first: the bound (dpop.replayEntries) must exceed the proofs
 * accepted within a window, or a replay of an early one is missed.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly #records = new Map<string, number>();
  readonly #max: number;
  readonly #clock: { now(): number };
  readonly #onOverflow: (() => void) | undefined;

  constructor(options: MemoryReplayOptions) {
    this.#max = Math.max(1, options.maxEntries);
    this.#clock = options.clock ?? Date;
    this.#onOverflow = options.onOverflow;
  }

  get size(): number {
    return this.#records.size;
  }

  async claim(key: string, until: number): Promise<boolean> {
    return this.claimNow(key, until);
  }

  claimNow(key: string, until: number): boolean {
    const now = this.#clock.now();
    const end = this.#records.get(key);
    if (end !== undefined && end >= now) return false;
    this.#records.delete(key);
    if (this.#records.size >= this.#max) this.#makeRoom(now);
    this.#records.set(key, until);
    return true;
  }

  async close(): Promise<void> {
    this.#records.clear();
  }

  #makeRoom(now: number): void {
    // Ends are close to insertion order (iat within one window): the expired gather at the front.
    for (const [key, end] of this.#records) {
      if (this.#records.size < this.#max) return;
      if (end >= now) break;
      this.#records.delete(key);
    }
    if (this.#records.size >= this.#max) {
      this.#records.delete(this.#records.keys().next().value!);
      this.#onOverflow?.();
    }
  }
}

export interface RedisReplayOptions extends RedisTarget {
  keySecret: string;
  keyPrefix: string;
  /** Milliseconds a SET may take before the check goes on with the local record alone. */
  timeout: number;
  local: MemoryReplayStore;
  clock?: { now(): number };
  onError?: (error: Error) => void;
}

/**
 * The local store first (a replay at this replica costs no round trip), then
 * SET NX PX in Redis. When Redis fails or is slow the local record stands
 * alone: the proof is accepted here, and only a replay at another replica
 * within the window would go unnoticed (counted by onError).
 */
export class RedisReplayStore implements ReplayStore {
  readonly #client: Redis | Cluster;
  readonly #name: Buffer;
  readonly #prefix: string;
  readonly #local: MemoryReplayStore;
  readonly #clock: { now(): number };
  readonly #onError: ((error: Error) => void) | undefined;

  constructor(options: RedisReplayOptions) {
    this.#name = sharedKeys(options.keySecret).replay;
    this.#prefix = `${options.keyPrefix}dpop:`;
    this.#local = options.local;
    this.#clock = options.clock ?? Date;
    this.#onError = options.onError;
    this.#client = connectRedis(options, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeout,
    });
    this.#client.on('error', () => {});
  }

  /** Whether commands go out now (until then each claim is checked locally only). */
  get connected(): boolean {
    return this.#client.status === 'ready';
  }

  async claim(key: string, until: number): Promise<boolean> {
    if (!this.#local.claimNow(key, until)) return false;
    const ttl = Math.max(1, Math.ceil(until - this.#clock.now()));
    const name = this.#prefix + createHmac('sha256', this.#name).update(key).digest('hex');
    try {
      return (await this.#client.set(name, '1', 'PX', ttl, 'NX')) === 'OK';
    } catch (error) {
      this.#onError?.(error as Error);
      return true;
    }
  }

  async close(): Promise<void> {
    this.#client.disconnect();
  }
}
