/**
 * Policies for unit tests, built by the real resolver from raw options as a
 * configuration file would give them (every other option at its default).
 */
import { randomBytes } from 'node:crypto';
import { resolvePolicy, type PolicyConfig } from '../../src/config/policy.js';
import { DpopVerifier } from '../../src/credentials/dpop.js';
import { DpopNonces } from '../../src/credentials/dpop-nonce.js';
import { MemoryReplayStore } from '../../src/credentials/replay-store.js';
import type { SenderContext } from '../../src/decide.js';
import { policySchema, type RawPolicy } from '../../src/config/schema.js';

export const TEST_ENDPOINTS = [
  { name: 'as', restricted: false, issuer: 'https://as.example' },
  { name: 'other-as', restricted: false, issuer: 'https://other-as.example' },
];

const DEFAULTS = Object.fromEntries(Object.entries(policySchema).map(([key, option]) => [key, option.default])) as RawPolicy;

/** A resolved policy named "default" on endpoint "as"; `raw` overrides options as a file would. */
export function testPolicy(raw: Partial<RawPolicy> = {}): PolicyConfig {
  return resolvePolicy({ ...DEFAULTS, name: 'default', endpoint: 'as', ...raw }, TEST_ENDPOINTS, (key, problem) => {
    throw new Error(`${key}: ${problem}`);
  });
}

/** A sender context of its own (in-memory replay store, fresh nonce secret), for a DecideContext built by hand. */
export function testSender(): SenderContext {
  return {
    verifier: new DpopVerifier(),
    replay: new MemoryReplayStore({ maxEntries: 100_000 }),
    maxProofLength: 4096,
    nonces: new DpopNonces({ secret: randomBytes(32), lifetimeSeconds: 300 }),
  };
}
