/**
 * The timers of the Checks that wait on the authorization server, grouped by
 * when they are due. Against a hanging endpoint a burst of Checks comes due
 * at about the same moment, and answering each one costs event-loop time:
 * one timer per Check fires them one by one, the last hundreds answered
 * after Envoy's own deadline (a failed RPC to Envoy). Here the Checks due in
 * one slot fire together, early by what it will take to answer all of those
 * due about then, and by the event loop's recent lag (which delayed both
 * grpc-js reading the deadline and our timer).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Width of one slot (ms): Checks due within it fire in the same tick, up to this much early. */
export const SLOT_MS = 5;

/** What answering one due Check costs (ms) until a burst has been measured; about twice what this machine showed. */
export const ANSWER_COST_PRIOR_MS = 0.25;

/** Bounds on the measured cost of answering one Check (ms): a single odd sample must not run away. */
const ANSWER_COST_MIN_MS = 0.05;
const ANSWER_COST_MAX_MS = 2;

/** A burst must be at least this large before its cost per Check is taken as a measurement. */
const MEASURED_BURST = 16;

/** Event-loop lag counted, at most (ms): a GC pause or a stopped machine must not deny every Check early for long. */
export const LAG_MAX_MS = 60;

/** How long one window of event-loop lag readings lasts (ms); the lag used is the worst of the last two windows. */
const LAG_WINDOW_MS = 1_000;

interface Bucket {
  readonly slot: number;
  readonly entries: Set<WheelEntry>;
  timer: NodeJS.Timeout | undefined;
  fireAt: number;
}

/** One Check's place on the wheel. */
export interface WheelEntry {
  readonly fire: () => void;
  bucket: Bucket | undefined;
}

export class DeadlineWheel {
  readonly #buckets = new Map<number, Bucket>();
  #costMs = ANSWER_COST_PRIOR_MS;
  #lag: IntervalHistogram | undefined;
  #lagWindowStart = 0;
  #lagPreviousMax = 0;

  /** Checks on the wheel now. */
  get pending(): number {
    let n = 0;
    for (const bucket of this.#buckets.values()) n += bucket.entries.size;
    return n;
  }

  /** The measured cost of answering one due Check (ms). */
  get answerCostMs(): number {
    return this.#costMs;
  }

  /** When the Checks due at `abortAt` are to fire (epoch ms), if any are on the wheel. */
  plannedFor(abortAt: number): number | undefined {
    return this.#buckets.get(Math.floor(abortAt / SLOT_MS))?.fireAt;
  }

  /** Recent event-loop lag (ms), bounded by LAG_MAX_MS. */
  lagMs(now = Date.now()): number {
    if (this.#lag === undefined) {
      // Sampled by libuv every 10 ms: no cost per Check, and made only once a Check waits.
      this.#lag = monitorEventLoopDelay({ resolution: 10 });
      this.#lag.enable();
      this.#lagWindowStart = now;
    }
    if (now - this.#lagWindowStart >= LAG_WINDOW_MS) {
      this.#lagPreviousMax = now - this.#lagWindowStart >= 2 * LAG_WINDOW_MS ? 0 : this.#lag.max;
      this.#lag.reset();
      this.#lagWindowStart = now;
    }
    return Math.min(LAG_MAX_MS, Math.max(this.#lagPreviousMax, this.#lag.max) / 1e6);
  }

  /**
   * Call `fire` at `abortAt` (epoch ms) or before: early by twice the recent
   * lag (once for the deadline read late, once for our timer firing late) and
   * by the cost of answering every Check due in the same slot.
   */
  add(abortAt: number, fire: () => void): WheelEntry {
    const slot = Math.floor(abortAt / SLOT_MS);
    let bucket = this.#buckets.get(slot);
    if (bucket === undefined) {
      bucket = { slot, entries: new Set(), timer: undefined, fireAt: Infinity };
      this.#buckets.set(slot, bucket);
    }
    const entry: WheelEntry = { fire, bucket };
    bucket.entries.add(entry);
    const now = Date.now();
    const fireAt = slot * SLOT_MS - 2 * this.lagMs(now) - this.#costMs * bucket.entries.size;
    // Only ever earlier: moving a timer costs a little, and a bucket never fires late for its later members.
    if (fireAt < bucket.fireAt - 1) {
      bucket.fireAt = fireAt;
      if (bucket.timer !== undefined) clearTimeout(bucket.timer);
      const armed = bucket;
      bucket.timer = setTimeout(() => this.#fire(armed), Math.max(0, fireAt - now));
    }
    return entry;
  }

  remove(entry: WheelEntry): void {
    const bucket = entry.bucket;
    if (bucket === undefined) return;
    entry.bucket = undefined;
    bucket.entries.delete(entry);
    if (bucket.entries.size === 0) {
      clearTimeout(bucket.timer);
      this.#buckets.delete(bucket.slot);
    }
  }

  /**
   * Fire a bucket and, with it, the buckets due before their answers would be
   * out: what this tick answers delays the next slot's timer by as much.
   */
  #fire(first: Bucket): void {
    const started = performance.now();
    const now = Date.now();
    const lead = 2 * this.lagMs(now);
    let fired = 0;
    for (let slot = first.slot; ; slot += 1) {
      const bucket = slot === first.slot ? first : this.#buckets.get(slot);
      if (bucket === undefined) {
        // An empty slot ends the sweep unless the work already done reaches past it.
        if (slot * SLOT_MS > now + lead + this.#costMs * fired) break;
        continue;
      }
      if (bucket !== first && slot * SLOT_MS > now + lead + this.#costMs * (fired + bucket.entries.size)) break;
      clearTimeout(bucket.timer);
      this.#buckets.delete(slot);
      for (const entry of bucket.entries) {
        entry.bucket = undefined;
        fired += 1;
        entry.fire();
      }
    }
    if (fired >= MEASURED_BURST) {
      // The answers run in the microtasks after this tick: measured once they are done.
      setImmediate(() => this.#measured((performance.now() - started) / fired));
    }
  }

  /** Learn what answering one Check costs: up at once, down slowly. */
  #measured(sample: number): void {
    const bounded = Math.min(ANSWER_COST_MAX_MS, Math.max(ANSWER_COST_MIN_MS, sample));
    this.#costMs = bounded > this.#costMs ? bounded : this.#costMs + (bounded - this.#costMs) / 8;
  }
}

/** The process's wheel: one event loop, one wheel, shared by every gRPC server in it. */
export const deadlineWheel = new DeadlineWheel();
