/** The bench's knobs, all from the environment, each bounded so that a run always ends. */

function number(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new TypeError(`${name} must be a number from ${min} to ${max}`);
  return value;
}

/** A comma list of numbers, each within bounds, at most `maxItems` of them. */
function numbers(name: string, fallback: number[], min: number, max: number, maxItems: number): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const values = raw.split(',').map((item) => Number(item.trim()));
  if (values.length > maxItems || values.some((value) => !Number.isFinite(value) || value < min || value > max)) {
    throw new TypeError(`${name} must be a comma list of at most ${maxItems} numbers from ${min} to ${max}`);
  }
  return values;
}

export interface Settings {
  /** Seconds of each h2load measurement (-D) and of each Node client loop. */
  durationS: number;
  /** Interleaved rounds of the saturation runs (baselines, cached, deny, negative); medians are reported. */
  rounds: number;
  /** Seconds of h2load warm-up before each measurement. */
  warmUpS: number;
  clients: number;
  streams: number;
  coldConcurrency: number;
  coalesce: number;
  coalesceDelayMs: number;
  coalesceRounds: number;
  memoryEntries: number;
  starts: number;
  peer: boolean;
  /** Offered rates of the fixed-rate table, Checks/s. */
  rates: number[];
  /** Seconds measured at each fixed rate (after rateWarmUpS more, not recorded). */
  rateDurationS: number;
  rateWarmUpS: number;
  /** HTTP/2 connections the open-loop generator spreads its requests over. */
  rateConnections: number;
  /** Scenario names to run (all when empty). */
  only: Set<string>;
}

export function readSettings(): Settings {
  return {
    durationS: number('BENCH_DURATION', 8, 1, 120),
    rounds: number('BENCH_ROUNDS', 3, 1, 9),
    warmUpS: number('BENCH_WARMUP', 2, 0, 30),
    clients: number('BENCH_CLIENTS', 8, 1, 64),
    streams: number('BENCH_STREAMS', 16, 1, 256),
    coldConcurrency: number('BENCH_COLD_CONCURRENCY', 32, 1, 256),
    coalesce: number('BENCH_COALESCE', 200, 2, 1000),
    coalesceDelayMs: number('BENCH_COALESCE_DELAY_MS', 50, 0, 1000),
    coalesceRounds: number('BENCH_COALESCE_ROUNDS', 3, 1, 20),
    memoryEntries: number('BENCH_MEMORY_ENTRIES', 100_000, 1000, 1_000_000),
    starts: number('BENCH_STARTS', 5, 1, 20),
    peer: process.env.BENCH_PEER !== '0',
    rates: numbers('BENCH_RATES', [1000, 5000, 10_000], 10, 50_000, 6),
    rateDurationS: number('BENCH_RATE_DURATION', 6, 1, 60),
    rateWarmUpS: number('BENCH_RATE_WARMUP', 1, 0, 10),
    rateConnections: number('BENCH_RATE_CONNECTIONS', 4, 1, 32),
    only: new Set((process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean)),
  };
}

export const SCENARIOS = ['baselines', 'cached', 'deny', 'negative', 'workers', 'cold', 'jwt', 'coalescing', 'memory', 'startup', 'peer', 'http', 'fixed-rate', 'tracing'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
