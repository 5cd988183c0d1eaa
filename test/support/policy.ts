/**
 * Policies for unit tests, built by the real resolver from raw options as a
 * configuration file would give them (every other option at its default).
 */
import { resolvePolicy, type PolicyConfig } from '../../src/config/policy.js';
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
