/**
 * Attribute rules (IBM Verify Access: attributes): which members of an
 * introspection answer a policy may expose upstream. An ordered list such as
 * ["+scope", "+client_id", "-exp", "-*_internal", "+*"]; each member is tested
 * against the rules in order, the first match decides, and a member no rule
 * matches is kept.
 */
import { compileGlob, matchGlob, type Glob } from './glob.js';

export interface AttributeRule {
  readonly include: boolean;
  readonly glob: Glob;
}

export interface AttributeRules {
  readonly source: readonly string[];
  readonly rules: readonly AttributeRule[];
}

/** Rules that keep every member. */
export const KEEP_ALL: AttributeRules = Object.freeze(
  Object.defineProperty({ source: Object.freeze([]), rules: Object.freeze([]) }, 'toJSON', { value: () => [], enumerable: false }),
);

/** One rule, "+pattern" or "-pattern". Throws a TypeError that never quotes the rule. */
export function compileAttributeRule(source: string): AttributeRule {
  const sign = source[0];
  if (sign !== '+' && sign !== '-') throw new TypeError('must start with "+" (keep) or "-" (drop)');
  if (source.length > 257) throw new TypeError('must be at most 256 characters after the sign');
  try {
    return Object.freeze({ include: sign === '+', glob: compileGlob(source.slice(1)) });
  } catch (error) {
    throw new TypeError(`${(error as Error).message} after the sign`);
  }
}

/**
 * Compile a whole list. A bad entry throws an AttributeRuleError carrying its
 * index, so the loader can name the key (`attributes[2]`).
 */
export function compileAttributeRules(sources: readonly string[]): AttributeRules {
  if (sources.length === 0) return KEEP_ALL;
  const rules = sources.map((source, index) => {
    try {
      return compileAttributeRule(source);
    } catch (error) {
      throw new AttributeRuleError(index, (error as Error).message);
    }
  });
  const source = Object.freeze([...sources]);
  // Prints as the list it was written as (check-config).
  const compiled = { source, rules: Object.freeze(rules) };
  Object.defineProperty(compiled, 'toJSON', { value: () => source, enumerable: false });
  return Object.freeze(compiled);
}

export class AttributeRuleError extends TypeError {
  readonly code = 'ERR_ATTRIBUTE_RULE';
  readonly index: number;
  constructor(index: number, message: string) {
    super(message);
    this.index = index;
  }
}

export function isKept(rules: AttributeRules, name: string): boolean {
  const list = rules.rules;
  for (let i = 0; i < list.length; i += 1) if (matchGlob(list[i]!.glob, name)) return list[i]!.include;
  return true;
}

/**
 * What each rule list decided for each claim name: the same few names come
 * in every answer. Names come from the authorization server, so only short
 * ones are remembered, and at most MAX_REMEMBERED_NAMES per list: past that
 * the memo starts over, and a flood of new names costs matching, not memory.
 */
const decided = new WeakMap<AttributeRules, Map<string, boolean>>();
const MAX_REMEMBERED_NAMES = 512;
const MAX_REMEMBERED_NAME_LENGTH = 128;

function keeps(rules: AttributeRules, memo: Map<string, boolean>, name: string): boolean {
  let kept = memo.get(name);
  if (kept === undefined) {
    kept = isKept(rules, name);
    if (name.length <= MAX_REMEMBERED_NAME_LENGTH) {
      if (memo.size >= MAX_REMEMBERED_NAMES) memo.clear();
      memo.set(name, kept);
    }
  }
  return kept;
}

/** Names of the members the rules keep, in the answer's order: always a subset of Object.keys(claims). */
export function keptAttributes(rules: AttributeRules, claims: Readonly<Record<string, unknown>>): string[] {
  const names = Object.keys(claims);
  if (rules.rules.length === 0) return names;
  let memo = decided.get(rules);
  if (memo === undefined) decided.set(rules, (memo = new Map()));
  const kept: string[] = [];
  for (let i = 0; i < names.length; i += 1) if (keeps(rules, memo, names[i]!)) kept.push(names[i]!);
  return kept;
}
