/**
 * The one metrics registry. Every label has a small, closed set of values
 * (decision, reason, outcome) or comes from configuration (policy and endpoint
 * names); no label ever carries a token, a subject or any other per-request value.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheResult, Decision } from '../decision.js';
import type { CircuitState } from '../introspection/circuit-breaker.js';
import type { Outcome } from '../introspection/result.js';
import { VERSION } from '../version.js';
import { openMetricsText } from './open-metrics.js';

/** Which edge a decision was asked through: the gRPC Check, or an HTTP sub-request. */
export type Transport = 'grpc' | 'http';

/** Check latency: from 100 µs (a cached answer) to 10 s (the longest authenticationTimeout in use). */
const CHECK_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Introspection latency: a loopback or in-cluster authorization server answers in ms. */
const INTROSPECTION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const CIRCUIT_STATE_VALUES: Readonly<Record<CircuitState, number>> = { closed: 0, half_open: 1, open: 2 };

/**
 * Counters of the service as a whole. With workers, the primary counts these
 * (it validates reloads and takes admin requests) and the workers' stay at 0,
 * so the sum over processes is the service's count either way.
 */
export const SERVICE_COUNTERS = {
  adminEvictions: {
    name: 'authz_cache_admin_evictions_total',
    help: 'Cache evictions ordered through the admin route DELETE /cache, by scope (token, all).',
    labelNames: ['scope'] as const,
  },
  opsConnectionsRefused: {
    name: 'authz_ops_connections_refused_total',
    help: 'Connections to the ops port closed as soon as accepted, because server.ops.maxConnections were open.',
  },
  configReloads: {
    name: 'authz_config_reloads_total',
    help: 'Configuration reloads by result (success, failure).',
    labelNames: ['result'] as const,
  },
  secretReloads: {
    name: 'authz_secret_file_reloads_total',
    help:
      'Reloads made because a file the configuration reads (a secret, certificate or key) changed, by result ' +
      '(success, failure: the previous configuration stays). Also counted in authz_config_reloads_total.',
    labelNames: ['result'] as const,
  },
};

/**
 * Increments of one label set, counted here and handed to prom-client when
 * the counter is read: prom-client hashes and checks the label set on every
 * inc, which would be much of what a cached Check costs.
 */
interface Tally {
  readonly labels: Record<string, string>;
  pending: number;
}

type TalliesByReason = Map<string, Map<string, Tally>>;

function flush(counter: Counter, tallies: Iterable<Tally>): void {
  for (const tally of tallies) {
    if (tally.pending === 0) continue;
    counter.inc(tally.labels, tally.pending);
    tally.pending = 0;
  }
}

/**
 * An endpoint's counts, bound once per endpoint name when the Authorizer
 * builds the endpoint: a call costs no label object and no label hashing.
 */
export class EndpointMetrics {
  readonly labels: { readonly endpoint: string };
  /** Calls under way, read by the in-flight gauge when scraped. */
  inFlight = 0;
  /** Finished calls by outcome, handed to prom-client when read (see Tally). */
  readonly outcomes = new Map<Outcome, Tally>();
  readonly #duration: Histogram;
  readonly #exemplars: boolean;

  constructor(endpoint: string, duration: Histogram, exemplars: boolean) {
    this.labels = Object.freeze({ endpoint });
    this.#duration = duration;
    this.#exemplars = exemplars;
  }

  started(): void {
    this.inFlight += 1;
  }

  /** One finished call (inFlight is the caller's to decrement, in a finally). */
  /** @param traceId the call's trace id when it was sampled: the exemplar of its bucket */
  finished(outcome: Outcome, seconds: number, traceId?: string): void {
    let tally = this.outcomes.get(outcome);
    if (tally === undefined) this.outcomes.set(outcome, (tally = { labels: { endpoint: this.labels.endpoint, outcome }, pending: 0 }));
    tally.pending += 1;
    // A call refused by an open circuit took no time at the endpoint: it would only drag the latency down.
    if (outcome === 'circuit_open') return;
    if (!this.#exemplars) this.#duration.observe(this.labels, seconds);
    else {
      // With exemplars on prom-client takes one object; an empty set keeps the bucket's exemplar.
      const exemplarLabels = traceId === undefined ? NO_EXEMPLAR : { trace_id: traceId };
      this.#duration.observe({ labels: this.labels, value: seconds, exemplarLabels } as never);
    }
  }

  ended(): void {
    this.inFlight -= 1;
  }
}

export class Metrics {
  readonly registry = new Registry();
  /** Check decisions by transport, whether a dry run would have denied, reason, then policy: no key is built per Check. */
  readonly #decisionTallies: Readonly<Record<Transport, readonly [TalliesByReason, TalliesByReason]>> = {
    grpc: [new Map(), new Map()],
    http: [new Map(), new Map()],
  };
  readonly #cacheTallies = new Map<CacheResult, Tally>();
  readonly #endpoints = new Map<string, EndpointMetrics>();
  readonly #sharedLookupTallies = new Map<string, Tally>();

  readonly decisions = new Counter({
    name: 'authz_check_decisions_total',
    help: 'Check decisions by decision (allow, deny, would_deny: allowed by a dryRun policy), reason, policy and transport (grpc, http).',
    labelNames: ['decision', 'reason', 'policy', 'transport'] as const,
    registers: [this.registry],
    collect: () => {
      for (const byVerdict of Object.values(this.#decisionTallies)) {
        for (const byReason of byVerdict) for (const byPolicy of byReason.values()) flush(this.decisions, byPolicy.values());
      }
    },
  });

  /** With tracing on, the latency histograms keep a sampled request's trace id per bucket (OpenMetrics exemplars). */
  readonly exemplars: boolean;

  readonly checkDuration: Histogram;

  readonly introspections = new Counter({
    name: 'authz_introspection_requests_total',
    help:
      'Introspections by endpoint and outcome (active, inactive, error, timeout, bad_response, circuit_open); ' +
      'retries of one introspection count once.',
    labelNames: ['endpoint', 'outcome'] as const,
    registers: [this.registry],
    collect: () => {
      for (const endpoint of this.#endpoints.values()) flush(this.introspections, endpoint.outcomes.values());
    },
  });

  readonly introspectionDuration: Histogram<'endpoint'>;

  readonly traceExportFailures = new Counter({
    name: 'authz_trace_export_failures_total',
    help: 'Batches of spans the OTLP exporter could not deliver (collector down, refusing or slow): those spans are lost, Checks are not affected.',
    registers: [this.registry],
  });

  readonly introspectionsInFlight = new Gauge({
    name: 'authz_introspection_in_flight',
    help: 'Calls to introspection endpoints under way, by endpoint, counting those still queued for one of the endpoint\'s maxInFlight slots.',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
    collect: () => {
      for (const endpoint of this.#endpoints.values()) this.introspectionsInFlight.set(endpoint.labels, endpoint.inFlight);
    },
  });

  readonly cacheLookups = new Counter({
    name: 'authz_cache_lookups_total',
    help:
      'Cache lookups of Checks that reached introspection: hit, negative_hit (a recent inactive answer), miss ' +
      '(this Check called the endpoint), coalesced (it shared another Check\'s call) or stale (the endpoint ' +
      'failed and an expired answer was served under staleIfError).',
    labelNames: ['result'] as const,
    registers: [this.registry],
    collect: (): void => flush(this.cacheLookups, this.#cacheTallies.values()),
  });

  readonly jwksFetches = new Counter({
    name: 'authz_jwks_fetches_total',
    help: 'Fetches of an issuer\'s key set (JWKS, with its metadata when discovered), by endpoint and result (success, failure).',
    labelNames: ['endpoint', 'result'] as const,
    registers: [this.registry],
  });

  readonly staleAnswers = new Counter({
    name: 'authz_stale_answers_total',
    help: 'Checks answered from an expired active answer because the endpoint failed (staleIfError), by endpoint.',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });

  readonly dpopReplayOverflows = new Counter({
    name: 'authz_dpop_replay_overflows_total',
    help:
      'DPoP proof ids dropped from the in-memory replay store before their window ended, to make room ' +
      '(dpop.replayEntries is too small for the load): a replay of such a proof at this replica would pass.',
    registers: [this.registry],
  });

  readonly dpopReplayErrors = new Counter({
    name: 'authz_dpop_replay_errors_total',
    help: 'Failed or timed-out Redis writes of DPoP proof ids: the proof was checked against this replica\'s record alone.',
    registers: [this.registry],
  });

  readonly introspectionPauses = new Counter({
    name: 'authz_introspection_pauses_total',
    help: 'Pauses in calls to an endpoint that asked for one (HTTP 429, or 503 with Retry-After), by endpoint and status.',
    labelNames: ['endpoint', 'status'] as const,
    registers: [this.registry],
  });

  readonly introspectionRetries = new Counter({
    name: 'authz_introspection_retries_total',
    help: 'Retries of introspections after a connection failure or an HTTP 502/503/504, by endpoint.',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });

  readonly adminEvictions = new Counter({ ...SERVICE_COUNTERS.adminEvictions, registers: [this.registry] });
  readonly opsConnectionsRefused = new Counter({ ...SERVICE_COUNTERS.opsConnectionsRefused, registers: [this.registry] });

  readonly cacheEvictions = new Counter({
    name: 'authz_cache_evictions_total',
    help: 'Cache entries pushed out by the maxCacheEntries bound.',
    registers: [this.registry],
  });

  readonly sharedCacheLookups = new Counter({
    name: 'authz_shared_cache_lookups_total',
    help: 'Lookups in the shared (Redis) cache tier after an in-process miss, by result (hit, miss, refused: an entry that does not open or predates an eviction, error, skipped: circuit open).',
    labelNames: ['result'] as const,
    registers: [this.registry],
    collect: (): void => flush(this.sharedCacheLookups, this.#sharedLookupTallies.values()),
  });

  readonly sharedCacheDuration = new Histogram({
    name: 'authz_shared_cache_lookup_duration_seconds',
    help: 'Duration of shared (Redis) cache lookups, failed ones included.',
    buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1],
    registers: [this.registry],
  });

  readonly sharedCacheErrors = new Counter({
    name: 'authz_shared_cache_errors_total',
    help: 'Failed shared (Redis) cache commands, by operation (get, set, evict, subscribe).',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  readonly configReloads = new Counter({ ...SERVICE_COUNTERS.configReloads, registers: [this.registry] });
  readonly secretReloads = new Counter({ ...SERVICE_COUNTERS.secretReloads, registers: [this.registry] });

  readonly configLoadedAt = new Gauge({
    name: 'authz_config_last_success_timestamp_seconds',
    help: 'When the configuration in use was loaded (Unix time).',
    registers: [this.registry],
    // Summed over workers it would mean nothing; the earliest is when the last reload reached them all.
    aggregator: 'min',
  });

  constructor(options: {
    cacheEntries: () => number;
    negativeCacheEntries?: () => number;
    circuitStates?: () => Iterable<[string, CircuitState]>;
    /** tracing.enabled: the latency histograms carry exemplars. */
    exemplars?: boolean;
  }) {
    this.exemplars = options.exemplars ?? false;
    this.checkDuration = new Histogram({
      name: 'authz_check_duration_seconds',
      help: 'Time from receiving a Check to sending its answer.',
      buckets: CHECK_BUCKETS,
      // prom-client refuses exemplars in a registry of the Prometheus text format, which this one stays
      // (openMetricsText renders the other): registered by hand.
      registers: [],
      enableExemplars: this.exemplars,
    });
    this.registry.registerMetric(this.checkDuration);
    this.introspectionDuration = new Histogram({
      name: 'authz_introspection_duration_seconds',
      help: 'Duration of calls to introspection endpoints, by endpoint.',
      labelNames: ['endpoint'] as const,
      buckets: INTROSPECTION_BUCKETS,
      registers: [],
      enableExemplars: this.exemplars,
    });
    this.registry.registerMetric(this.introspectionDuration);
    new Gauge({
      name: 'authz_build_info',
      help: 'Always 1; the labels tell the version and the Node.js runtime.',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry],
      aggregator: 'max',
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
    for (const result of ['success', 'failure']) this.secretReloads.inc({ result }, 0);
    new Gauge({
      name: 'authz_cache_negative_entries',
      help: 'Inactive introspection answers held in the negative cache.',
      registers: [this.registry],
      collect() {
        this.set(options.negativeCacheEntries?.() ?? 0);
      },
    });
    new Gauge({
      name: 'authz_introspection_circuit_state',
      help: 'Circuit breaker state by endpoint: 0 closed, 1 half-open, 2 open.',
      labelNames: ['endpoint'] as const,
      registers: [this.registry],
      // Each worker has its own breaker: show the worst.
      aggregator: 'max',
      collect() {
        // Read at scrape time: an open circuit turns half-open by the clock alone, and reloads change the endpoints.
        this.reset();
        for (const [endpoint, state] of options.circuitStates?.() ?? []) this.set({ endpoint }, CIRCUIT_STATE_VALUES[state]);
      },
    });
    for (const result of ['hit', 'negative_hit', 'miss', 'coalesced', 'stale']) this.cacheLookups.inc({ result }, 0);
    for (const scope of ['token', 'all']) this.adminEvictions.inc({ scope }, 0);
    this.configLoadedAt.setToCurrentTime();
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Count one answered Check (or HTTP sub-request).
   * @param traceId the request's trace id when it was sampled: the exemplar of its bucket
   */
  recordDecision(decision: Decision, seconds: number, transport: Transport = 'grpc', traceId?: string): void {
    const policy = decision.policy ?? '';
    // A would-be deny is counted under its own reason, which the closed union bounds as it does every reason.
    const wouldDeny = decision.allow ? decision.wouldDeny : undefined;
    const reason = wouldDeny?.reason ?? decision.reason;
    const verdict = wouldDeny ? 'would_deny' : decision.allow ? 'allow' : 'deny';
    const byReason = this.#decisionTallies[transport][wouldDeny ? 1 : 0];
    let byPolicy = byReason.get(reason);
    if (byPolicy === undefined) byReason.set(reason, (byPolicy = new Map()));
    let tally = byPolicy.get(policy);
    if (tally === undefined) {
      tally = { labels: { decision: verdict, reason, policy, transport }, pending: 0 };
      byPolicy.set(policy, tally);
    }
    tally.pending += 1;
    if (!this.exemplars) this.checkDuration.observe(seconds);
    // With exemplars on prom-client takes one object (its observe changes shape); an empty set keeps the bucket's exemplar.
    else this.checkDuration.observe({ value: seconds, exemplarLabels: traceId === undefined ? NO_EXEMPLAR : { trace_id: traceId } } as never);
    if (decision.cache !== 'none') {
      let lookups = this.#cacheTallies.get(decision.cache);
      if (lookups === undefined) this.#cacheTallies.set(decision.cache, (lookups = { labels: { result: decision.cache }, pending: 0 }));
      lookups.pending += 1;
    }
  }

  /** An endpoint's counts, the same object for every caller naming it (reloads keep counting calls under way). */
  endpoint(name: string): EndpointMetrics {
    let endpoint = this.#endpoints.get(name);
    if (endpoint === undefined) this.#endpoints.set(name, (endpoint = new EndpointMetrics(name, this.introspectionDuration, this.exemplars)));
    return endpoint;
  }

  /** Count one finished call to an endpoint. */
  recordIntrospection(endpoint: string, outcome: Outcome, seconds: number, traceId?: string): void {
    this.endpoint(endpoint).finished(outcome, seconds, traceId);
  }

  /** Count one shared-tier lookup; `skipped` ones (circuit open) took no time worth timing. */
  recordSharedLookup(result: string, seconds: number): void {
    let tally = this.#sharedLookupTallies.get(result);
    if (tally === undefined) this.#sharedLookupTallies.set(result, (tally = { labels: { result }, pending: 0 }));
    tally.pending += 1;
    if (result !== 'skipped') this.sharedCacheDuration.observe(seconds);
  }

  /** The registry in the OpenMetrics text format, exemplars included (see openMetricsText). */
  openMetrics(): Promise<string> {
    return openMetricsText(this.registry);
  }
}

const NO_EXEMPLAR: Record<string, string> = Object.freeze({}) as Record<string, string>;
