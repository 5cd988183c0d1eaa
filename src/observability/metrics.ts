/**
 * The one metrics registry. Every label has a small, closed set of values
 * (decision, reason, outcome) or comes from configuration (policy and endpoint
 * names); no label ever carries a token, a subject or any other per-request value.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheResult, Decision } from '../decision.js';
import type { Outcome } from '../introspection/result.js';
import { VERSION } from '../version.js';

/** Check latency: from 100 µs (a cached answer) to 10 s (the longest authenticationTimeout in use). */
const CHECK_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Introspection latency: a loopback or in-cluster authorization server answers in ms. */
const INTROSPECTION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export type CacheLookup = Exclude<CacheResult, 'none'> | 'negative_hit';

export class Metrics {
  readonly registry = new Registry();

  readonly decisions = new Counter({
    name: 'authz_check_decisions_total',
    help: 'Check decisions by decision (allow, deny), reason and policy.',
    labelNames: ['decision', 'reason', 'policy'] as const,
    registers: [this.registry],
  });

  readonly checkDuration = new Histogram({
    name: 'authz_check_duration_seconds',
    help: 'Time from receiving a Check to sending its answer.',
    buckets: CHECK_BUCKETS,
    registers: [this.registry],
  });

  readonly introspections = new Counter({
    name: 'authz_introspection_requests_total',
    help: 'Calls to introspection endpoints by endpoint and outcome (active, inactive, error, timeout, bad_response).',
    labelNames: ['endpoint', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly introspectionDuration = new Histogram({
    name: 'authz_introspection_duration_seconds',
    help: 'Duration of calls to introspection endpoints, by endpoint.',
    labelNames: ['endpoint'] as const,
    buckets: INTROSPECTION_BUCKETS,
    registers: [this.registry],
  });

  readonly introspectionsInFlight = new Gauge({
    name: 'authz_introspection_in_flight',
    help: 'Calls to introspection endpoints under way, by endpoint.',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });

  readonly cacheLookups = new Counter({
    name: 'authz_cache_lookups_total',
    help: 'Cache lookups of Checks that reached introspection: hit, miss (this Check called the endpoint) or coalesced (it shared another Check\'s call).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly cacheEvictions = new Counter({
    name: 'authz_cache_evictions_total',
    help: 'Cache entries pushed out by the maxCacheEntries bound.',
    registers: [this.registry],
  });

  readonly configReloads = new Counter({
    name: 'authz_config_reloads_total',
    help: 'Configuration reloads by result (success, failure).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly configLoadedAt = new Gauge({
    name: 'authz_config_last_success_timestamp_seconds',
    help: 'When the configuration in use was loaded (Unix time).',
    registers: [this.registry],
  });

  constructor(options: { cacheEntries: () => number }) {
    new Gauge({
      name: 'authz_build_info',
      help: 'Always 1; the labels tell the version and the Node.js runtime.',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry],
    }).set({ version: VERSION, node: process.version }, 1);
    new Gauge({
      name: 'authz_cache_entries',
      help: 'Introspection answers held in the cache.',
      registers: [this.registry],
      collect() {
        this.set(options.cacheEntries());
      },
    });
    for (const result of ['success', 'failure']) this.configReloads.inc({ result }, 0);
    for (const result of ['hit', 'miss', 'coalesced']) this.cacheLookups.inc({ result }, 0);
    this.configLoadedAt.setToCurrentTime();
    collectDefaultMetrics({ register: this.registry });
  }

  /** Count one answered Check. */
  recordDecision(decision: Decision, seconds: number): void {
    this.decisions.inc({ decision: decision.allow ? 'allow' : 'deny', reason: decision.reason, policy: decision.policy ?? '' });
    this.checkDuration.observe(seconds);
    if (decision.cache !== 'none') this.cacheLookups.inc({ result: decision.cache });
  }

  /** Count one finished call to an endpoint. */
  recordIntrospection(endpoint: string, outcome: Outcome, seconds: number): void {
    this.introspections.inc({ endpoint, outcome });
    this.introspectionDuration.observe({ endpoint }, seconds);
  }
}
