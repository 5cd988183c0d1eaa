/**
 * What a policy makes of an active token's claims: client and scope checks,
 * the identity, the kept attributes, the headers the upstream receives and the
 * dynamic metadata. Pure, and a function of (policy, claims) alone, so a
 * result can be reused for as long as the same claims object is (see
 * CompiledPolicy.evaluations).
 */
import type { PolicyConfig } from '../config/load.js';
import type { HeaderToSet, Metadata, MetadataValue } from '../decision.js';
import type { Claims } from '../introspection/result.js';
import { bindingOf } from '../credentials/sender-binding.js';
import { keptAttributes } from './attribute-rules.js';
import { renderTemplate } from './identity-template.js';
import { insufficientScopeDescription, scopesSatisfied } from './scopes.js';
import {
  attributeHeaderName,
  attributeHeaderValue,
  byteLength,
  isSafeHeaderValue,
  json,
  MAX_ATTRIBUTE_HEADERS,
  MAX_HEADER_VALUE_LENGTH,
  MAX_TOTAL_HEADER_BYTES,
  statusHeaderName,
} from './upstream-headers.js';

export interface Granted {
  readonly ok: true;
  readonly identity: string;
  /** The identity header first, then the binding header, then the attributes header, then one header per attribute. */
  readonly headers: readonly HeaderToSet[];
  readonly metadata: Metadata;
  /** What was left out, and why; logged with the decision, never sent. */
  readonly note: string | undefined;
}

export interface Refused {
  readonly ok: false;
  readonly reason: 'insufficient_scope' | 'client_not_allowed' | 'policy_error';
  readonly bearerError: 'insufficient_scope' | null;
  readonly description: string;
  readonly log: string;
}

export type Evaluation = Granted | Refused;

/**
 * Deepest nesting of an attribute value carried upstream. In dynamic_metadata
 * each JSON level is three protobuf messages deep, under six of the answer's
 * own; 30 keeps the deepest value within the nesting Envoy's protobuf parser
 * accepts (100; see envoy/response.ts).
 */
export const MAX_ATTRIBUTE_DEPTH = 30;

/** Most bytes (as JSON) of the attributes in dynamic_metadata. */
export const MAX_METADATA_BYTES = 32 * 1024;

const NO_IDENTITY = 'the token does not identify its holder';

export function evaluatePolicy(policy: PolicyConfig, claims: Claims): Evaluation {
  if (!policy.skipClientIdValidation) {
    const by = policy.consumerBy;
    const consumer = Object.hasOwn(claims, by) ? claims[by] : undefined;
    if (typeof consumer !== 'string' || !policy.allowedClients.has(consumer)) {
      return refuse(
        'client_not_allowed',
        null,
        'the client is not allowed to use this resource',
        typeof consumer === 'string' ? `the token's ${by} is not in allowedClients` : `the token has no string ${by} claim`,
      );
    }
  }
  if (!scopesSatisfied(policy.scopes, policy.scopeValidationCriteria, claims.scope)) {
    return refuse(
      'insufficient_scope',
      'insufficient_scope',
      insufficientScopeDescription(policy.scopeValidationCriteria),
      `the token's scope does not satisfy scopes (${policy.scopeValidationCriteria})`,
    );
  }

  const notes: string[] = [];
  const rendered = renderTemplate(policy.mappedIdentity, claims);
  let identity: string;
  if (rendered.ok) {
    identity = rendered.value;
  } else if (policy.identityFallback !== null) {
    identity = policy.identityFallback;
    notes.push(`identityFallback used: none of the claims ${rendered.missing.join(', ')} is present`);
  } else {
    return refuse('policy_error', null, NO_IDENTITY, `mappedIdentity needs one of the claims ${rendered.missing.join(', ')}, none present`);
  }
  if (!isSafeHeaderValue(identity) || byteLength(identity) > MAX_HEADER_VALUE_LENGTH) {
    return refuse('policy_error', null, NO_IDENTITY, 'the identity has control characters or is too long for a header');
  }

  const headers: HeaderToSet[] = [{ name: policy.identityHeader, value: identity }];
  const setByUs = new Set([policy.identityHeader]);
  let total = policy.identityHeader.length + byteLength(identity);
  // Reached only after decide confirmed the binding, which makes it a fact worth telling.
  const bound = policy.senderConstraint === 'off' ? 'none' : bindingOf(claims);
  const binding = typeof bound === 'object' ? bound : null;
  if (binding !== null && policy.bindingHeader !== null) {
    const value = `${binding.method} ${binding.thumbprint}`;
    headers.push({ name: policy.bindingHeader, value });
    setByUs.add(policy.bindingHeader);
    total += policy.bindingHeader.length + value.length;
  }
  const dropped: string[] = [];

  // The kept attributes that can travel at all, within the metadata budget.
  // No prototype (a claim may be named "__proto__"), made from {} rather than
  // Object.create(null), which V8 keeps in dictionary mode: a few hundred bytes
  // more in every cached evaluation.
  const attributes: Record<string, MetadataValue> = Object.setPrototypeOf({}, null);
  const names: string[] = [];
  let metadataBytes = 0;
  for (const name of keptAttributes(policy.attributes, claims)) {
    const value = claims[name];
    if (value === undefined) continue;
    const text = typeof value === 'string' ? value : withinDepth(value, MAX_ATTRIBUTE_DEPTH) ? json(value) : null;
    if (text === null) {
      dropped.push(`${name} (nested too deeply)`);
      continue;
    }
    const size = name.length + byteLength(text);
    if (metadataBytes + size > MAX_METADATA_BYTES) {
      dropped.push(`${name} (attributes over ${MAX_METADATA_BYTES} bytes)`);
      continue;
    }
    metadataBytes += size;
    attributes[name] = value as MetadataValue;
    names.push(name);
  }

  if (policy.attributesHeader !== null) {
    const value = Buffer.from(JSON.stringify(attributes)).toString('base64url');
    const size = policy.attributesHeader.length + value.length;
    if (value.length > MAX_HEADER_VALUE_LENGTH || total + size > MAX_TOTAL_HEADER_BYTES) {
      dropped.push(`${policy.attributesHeader} header (over ${MAX_HEADER_VALUE_LENGTH} bytes)`);
    } else {
      headers.push({ name: policy.attributesHeader, value });
      setByUs.add(policy.attributesHeader);
      total += size;
    }
  }

  if (policy.exposeHeaders) {
    const status = statusHeaderName(policy.headerPrefix);
    let count = 0;
    for (const name of names) {
      const header = headerNameFor(policy, name);
      const value = attributeHeaderValue(attributes[name]);
      if (value === null) continue;
      let problem: string | null = null;
      if (header === null) problem = 'no letter or digit, or too long a name';
      else if (setByUs.has(header) || header === status) problem = `${header} is already set`;
      else if (!isSafeHeaderValue(value)) problem = 'control characters';
      else if (byteLength(value) > MAX_HEADER_VALUE_LENGTH) problem = `over ${MAX_HEADER_VALUE_LENGTH} bytes`;
      else if (count >= MAX_ATTRIBUTE_HEADERS) problem = `more than ${MAX_ATTRIBUTE_HEADERS} attribute headers`;
      else if (total + header.length + byteLength(value) > MAX_TOTAL_HEADER_BYTES) problem = `headers over ${MAX_TOTAL_HEADER_BYTES} bytes in all`;
      if (problem !== null) {
        dropped.push(`header for ${name} (${problem})`);
        continue;
      }
      headers.push(sharedHeader(policy, header!, value));
      setByUs.add(header!);
      total += header!.length + byteLength(value);
      count += 1;
    }
  }

  if (dropped.length > 0) notes.push(`left out: ${summarize(dropped)}`);
  return Object.freeze({
    ok: true,
    identity,
    headers: Object.freeze(headers.map((header) => Object.freeze(header))),
    metadata: Object.freeze({
      policy: policy.name,
      status: 'authenticated',
      identity,
      attributes: Object.freeze(attributes),
      ...(binding === null ? {} : { binding: { method: binding.method, thumbprint: binding.thumbprint } }),
    }),
    note: notes.length > 0 ? notes.join('; ') : undefined,
  });
}

/**
 * Header names made from claim names, one string per policy and claim name:
 * every evaluation the cache keeps would otherwise hold its own copies. Claim
 * names come from the authorization server, so the memo is bounded.
 */
const headerNames = new WeakMap<PolicyConfig, Map<string, string | null>>();
const MAX_REMEMBERED_NAMES = 256;

function headerNameFor(policy: PolicyConfig, name: string): string | null {
  let names = headerNames.get(policy);
  if (names === undefined) headerNames.set(policy, (names = new Map()));
  let header = names.get(name);
  if (header === undefined) {
    header = attributeHeaderName(policy.headerPrefix, name);
    if (names.size < MAX_REMEMBERED_NAMES) names.set(name, header);
  }
  return header;
}

/**
 * Attribute headers, one frozen object per policy, name and value: values
 * such as iss, aud or scope repeat across tokens, and every cached evaluation
 * would otherwise hold its own. Bounded, as the values come from the
 * authorization server: once full the table starts over.
 */
interface SharedHeaders {
  readonly byName: Map<string, Map<string, HeaderToSet>>;
  count: number;
}

const sharedHeaders = new WeakMap<PolicyConfig, SharedHeaders>();
const MAX_SHARED_HEADERS = 1024;
const MAX_SHARED_HEADER_VALUE_LENGTH = 256;

function sharedHeader(policy: PolicyConfig, name: string, value: string): HeaderToSet {
  if (value.length > MAX_SHARED_HEADER_VALUE_LENGTH) return { name, value };
  let shared = sharedHeaders.get(policy);
  if (shared === undefined) sharedHeaders.set(policy, (shared = { byName: new Map(), count: 0 }));
  let byValue = shared.byName.get(name);
  const known = byValue?.get(value);
  if (known !== undefined) return known;
  if (shared.count >= MAX_SHARED_HEADERS) {
    shared.byName.clear();
    shared.count = 0;
    byValue = undefined;
  }
  if (byValue === undefined) shared.byName.set(name, (byValue = new Map()));
  const header = Object.freeze({ name, value });
  byValue.set(value, header);
  shared.count += 1;
  return header;
}

function refuse(reason: Refused['reason'], bearerError: Refused['bearerError'], description: string, log: string): Refused {
  return Object.freeze({ ok: false, reason, bearerError, description, log });
}

/** A few entries and a count: a log line stays short whatever the answer holds. */
function summarize(items: string[]): string {
  const shown = items.slice(0, 5).join(', ');
  return items.length > 5 ? `${shown} and ${items.length - 5} more` : shown;
}

/** Whether a JSON value nests no deeper than `max`; iterative, as nesting may be deep. */
export function withinDepth(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return true;
  const pending: Array<[unknown, number]> = [[value, 1]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop()!;
    if (item === null || typeof item !== 'object') continue;
    if (depth > max) return false;
    for (const key of Object.keys(item)) pending.push([(item as Record<string, unknown>)[key], depth + 1]);
  }
  return true;
}
