/**
 * The open-loop schedule and its bookkeeping, free of I/O: request i is due
 * at i / rate seconds after the start, whatever became of the earlier ones,
 * and its latency runs from that due time to its answer. A generator that
 * falls behind therefore shows its lateness in the figures instead of
 * quietly offering less load (coordinated omission); how late it sent is
 * kept apart, so a reader can tell the generator's delay from the server's.
 */
import { percentile } from '../support/stats.js';

export interface Schedule {
  /** Requests per second offered. */
  rate: number;
  /** Seconds before the measured window: sent and answered, not recorded. */
  warmUpS: number;
  /** Seconds of the measured window. */
  durationS: number;
}

/** Milliseconds after the start at which request `i` is due. */
export function dueAt(schedule: Schedule, i: number): number {
  return (i * 1000) / schedule.rate;
}

/** How many requests the whole schedule holds. */
export function totalCount(schedule: Schedule): number {
  return Math.ceil(schedule.rate * (schedule.warmUpS + schedule.durationS));
}

/** The index of the first request of the measured window. */
export function firstMeasured(schedule: Schedule): number {
  return Math.ceil(schedule.rate * schedule.warmUpS);
}

/** How many requests are due `elapsedMs` after the start (all of them once the schedule is over). */
export function dueCount(schedule: Schedule, elapsedMs: number): number {
  if (elapsedMs < 0) return 0;
  return Math.min(totalCount(schedule), Math.floor((elapsedMs * schedule.rate) / 1000) + 1);
}

/**
 * When the generator's ticker wakes the sender: at every due time, or every
 * `minGapMs` when due times are closer than that, the sender then sending
 * every request due. A wake-up costs some 30 µs of CPU across the two threads
 * (measured), so one per request at 10k/s would be a third of a core spent on
 * the clock; the price is a lateness of up to `minGapMs` for the requests due
 * between two wake-ups. Wake-up k is at k * step ms; the last one is at or
 * after the last due time.
 */
export function wakeUps(schedule: Schedule, minGapMs: number): { step: number; count: number } {
  const step = Math.max(1000 / schedule.rate, minGapMs);
  const last = dueAt(schedule, Math.max(0, totalCount(schedule) - 1));
  return { step, count: Math.ceil(last / step - 1e-9) + 1 };
}

/**
 * The requests in flight in the order sent, for one sweeping timer to find
 * the overdue ones instead of a timer per request: sends are in time order,
 * so the overdue ones are at the head, behind settled ones the sweep drops
 * as it passes. Settled requests further back wait for the head to pass
 * them, at most a timeout.
 */
export class InFlight<T extends { sentAt: number; settled: boolean }> {
  #items: T[] = [];
  #head = 0;

  add(item: T): void {
    this.#items.push(item);
  }

  /** Removes and returns the unsettled requests sent at or before `sentBy`. */
  takeOverdue(sentBy: number): T[] {
    const overdue: T[] = [];
    while (this.#head < this.#items.length) {
      const item = this.#items[this.#head]!;
      if (!item.settled && item.sentAt > sentBy) break;
      this.#head += 1;
      if (!item.settled) overdue.push(item);
    }
    // Dropped from the front in chunks, not one shift() per request.
    if (this.#head > 4096) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return overdue;
  }

  /** How many are held, settled or not. */
  get size(): number {
    return this.#items.length - this.#head;
  }
}

export type Outcome = 'ok' | 'wrong' | 'error';

export interface Percentiles {
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

function percentiles(sorted: number[]): Percentiles {
  return {
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

export interface Summary {
  /** The offered rate asked for. */
  rate: number;
  /** Requests of the measured window. */
  scheduled: number;
  /** Measured requests actually sent over the span from the first to the last send: the rate the generator achieved. */
  sentPerSec: number;
  /** Measured requests answered OK per second of the window. */
  answeredPerSec: number;
  ok: number;
  /** Answered, but not the expected allow. */
  wrong: number;
  /** Failed: a gRPC status other than 0, a stream error or a timeout. */
  errors: number;
  /** Scheduled but neither answered nor failed when the generator gave up waiting. */
  unanswered: number;
  /** ms from each request's due time to its answer, OK answers only. */
  latency: Percentiles;
  /**
   * ms from each request's actual send to its answer, OK answers only: the
   * server's part, lower than `latency` by however late the generator sent.
   * Not free of coordinated omission (a request sent late because the
   * generator stalled is timed from then), so it is shown beside, never instead.
   */
  fromSend: Percentiles;
  /** ms from each request's due time to its send: the generator's own lateness. */
  sendLag: { p50: number; p99: number; max: number };
}

/** Due, send and answer times of the measured requests; `record*` take the request's index in the schedule. */
export class Recorder {
  readonly #schedule: Schedule;
  readonly #first: number;
  readonly #sent: Float64Array;
  readonly #latency: Float64Array;
  readonly #outcome: Uint8Array;

  constructor(schedule: Schedule) {
    this.#schedule = schedule;
    this.#first = firstMeasured(schedule);
    const count = Math.max(0, totalCount(schedule) - this.#first);
    this.#sent = new Float64Array(count).fill(Number.NaN);
    this.#latency = new Float64Array(count).fill(Number.NaN);
    // 0: no outcome yet; 1 ok, 2 wrong, 3 error.
    this.#outcome = new Uint8Array(count);
  }

  #slot(i: number): number {
    const slot = i - this.#first;
    return slot >= 0 && slot < this.#outcome.length ? slot : -1;
  }

  /** Request `i` went out `sentMs` after the start. */
  sent(i: number, sentMs: number): void {
    const slot = this.#slot(i);
    if (slot >= 0) this.#sent[slot] = sentMs;
  }

  /** Request `i` ended `endMs` after the start; only its first outcome counts. */
  ended(i: number, endMs: number, outcome: Outcome): void {
    const slot = this.#slot(i);
    if (slot < 0 || this.#outcome[slot] !== 0) return;
    this.#outcome[slot] = outcome === 'ok' ? 1 : outcome === 'wrong' ? 2 : 3;
    if (outcome === 'ok') this.#latency[slot] = endMs - dueAt(this.#schedule, i);
  }

  summary(): Summary {
    const latencies: number[] = [];
    const fromSend: number[] = [];
    const lags: number[] = [];
    let ok = 0;
    let wrong = 0;
    let errors = 0;
    let firstSend = Number.POSITIVE_INFINITY;
    let lastSend = Number.NEGATIVE_INFINITY;
    let sent = 0;
    for (let slot = 0; slot < this.#outcome.length; slot += 1) {
      const at = this.#sent[slot]!;
      if (!Number.isNaN(at)) {
        sent += 1;
        firstSend = Math.min(firstSend, at);
        lastSend = Math.max(lastSend, at);
        lags.push(at - dueAt(this.#schedule, slot + this.#first));
      }
      const outcome = this.#outcome[slot];
      if (outcome === 1) {
        ok += 1;
        latencies.push(this.#latency[slot]!);
        // Due + latency is the answer's time; one never sent cannot have been answered, but a NaN would poison the sort.
        if (!Number.isNaN(at)) fromSend.push(dueAt(this.#schedule, slot + this.#first) + this.#latency[slot]! - at);
      } else if (outcome === 2) wrong += 1;
      else if (outcome === 3) errors += 1;
    }
    latencies.sort((a, b) => a - b);
    fromSend.sort((a, b) => a - b);
    lags.sort((a, b) => a - b);
    // n sends span n - 1 intervals.
    const span = (lastSend - firstSend) / 1000;
    const scheduled = this.#outcome.length;
    return {
      rate: this.#schedule.rate,
      scheduled,
      sentPerSec: sent > 1 && span > 0 ? (sent - 1) / span : Number.NaN,
      answeredPerSec: ok / this.#schedule.durationS,
      ok,
      wrong,
      errors,
      unanswered: scheduled - ok - wrong - errors,
      latency: percentiles(latencies),
      fromSend: percentiles(fromSend),
      sendLag: { p50: percentile(lags, 0.5), p99: percentile(lags, 0.99), max: lags.length > 0 ? lags[lags.length - 1]! : Number.NaN },
    };
  }
}

/**
 * Whether the generator kept to its schedule well enough for a row to be
 * about the server: it sent at least 97% of the offered rate and its p99
 * lateness stayed under a millisecond (the scale of the latencies measured).
 */
export function keptUp(summary: Summary): boolean {
  return summary.sentPerSec >= 0.97 * summary.rate && summary.sendLag.p99 < 1;
}
