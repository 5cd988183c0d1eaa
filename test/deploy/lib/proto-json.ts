/**
 * A strict reader of protobuf JSON (proto3 JSON mapping, as Envoy and Istio
 * read their YAML) against protobufjs descriptors. protobufjs' own fromObject
 * ignores unknown fields; this reader reports them, so that a misspelt field
 * in a configuration file fails a test instead of being dropped by the proxy's
 * parser at start-up (Envoy rejects unknown fields) or silently ignored.
 *
 * It accepts what the JSON mapping accepts: field names as written in the
 * .proto (snake_case) or their lowerCamelCase JSON names; enums by name or
 * number; 64-bit integers as numbers or strings; Duration and Timestamp as
 * strings; wrappers as bare values; Struct/Value/ListValue as any JSON; Any as
 * an object with "@type" whose other fields are read against that type
 * (loaded on demand). It also enforces oneofs (at most one member, and one
 * when the oneof is required), deprecated fields, and the common
 * protoc-gen-validate rules Envoy applies at load time (required messages,
 * string and list lengths, numeric and duration bounds).
 *
 * The result is an object protobufjs' fromObject takes without loss (Any
 * packed to bytes), so callers can encode and decode the whole message.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

export interface ReadResult {
  /** protobufjs fromObject input (snake_case names, Any packed). */
  value: Record<string, unknown>;
  /** One line per problem: "path: what is wrong". Empty when the input is valid. */
  problems: string[];
}

/** Loads .proto files from include directories, resolving imports against them. */
export function protoRoot(includeDirs: string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (origin: string, target: string): string | null => {
    if (isAbsolute(target)) return target;
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  return root;
}

const WRAPPERS: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

/** Types whose JSON form is not an object of fields: inside Any they sit under "value". */
const SPECIAL_JSON = new Set([
  ...Object.keys(WRAPPERS),
  '.google.protobuf.Duration',
  '.google.protobuf.Timestamp',
  '.google.protobuf.Struct',
  '.google.protobuf.Value',
  '.google.protobuf.ListValue',
  '.google.protobuf.FieldMask',
  '.google.protobuf.Any',
]);

/** lowerCamelCase JSON name of a field, as protoc derives it. */
export function jsonName(field: protobuf.Field): string {
  const explicit = (field.options as Record<string, unknown> | undefined)?.json_name;
  if (typeof explicit === 'string') return explicit;
  let out = '';
  let upper = false;
  for (const ch of field.name) {
    if (ch === '_') {
      upper = true;
      continue;
    }
    out += upper ? ch.toUpperCase() : ch;
    upper = false;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

const INT_RANGES: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const MAX_DURATION_SECONDS = 315_576_000_000n;

type Rules = Record<string, Record<string, unknown>>;

/** Nanoseconds of a Duration given as {seconds, nanos} (PGV rule values). */
function durationNanos(d: unknown): bigint {
  const o = (d ?? {}) as { seconds?: number | string; nanos?: number };
  return BigInt(o.seconds ?? 0) * 1_000_000_000n + BigInt(o.nanos ?? 0);
}

export class ProtoJsonReader {
  readonly #root: protobuf.Root;
  readonly #includeDirs: string[];
  readonly #fieldsByName = new Map<protobuf.Type, Map<string, protobuf.Field>>();

  /**
   * @param root a Root with the top-level types loaded.
   * @param includeDirs where to find the .proto files of types named by Any
   *   (a type's package maps to a folder: a.b.v3 -> a/b/v3/*.proto).
   */
  readonly #complete = new Map<string, boolean>();

  constructor(root: protobuf.Root, includeDirs: string[] = []) {
    this.#root = root;
    this.#includeDirs = includeDirs;
  }

  /** The type named fullName, loading its package's .proto files if needed. */
  resolveType(fullName: string): protobuf.Type | null {
    const found = this.#lookup(fullName);
    if (found) return found;
    const parts = fullName.split('.');
    // The package is a prefix of the name; nested messages make it shorter than all but the last part.
    for (let cut = parts.length - 1; cut > 0; cut -= 1) {
      const folder = parts.slice(0, cut).join('/');
      for (const dir of this.#includeDirs) {
        const path = join(dir, folder);
        if (!existsSync(path)) continue;
        // A file that imports what is not vendored (envoy/config/trace/v3/opencensus.proto) is left out:
        // its types could not be read anyway, and loading it would break the rest of its package.
        const files = readdirSync(path).filter((f) => f.endsWith('.proto') && this.#importsFound(join(path, f)));
        if (files.length === 0) continue;
        this.#root.loadSync(
          files.map((f) => join(path, f)),
          { keepCase: true },
        );
        this.#root.resolveAll();
        const loaded = this.#lookup(fullName);
        if (loaded) return loaded;
      }
    }
    return null;
  }

  /** Whether every file `file` imports, directly or not, is at hand (found: memo, and a guard against cycles). */
  #importsFound(file: string, found = this.#complete): boolean {
    const known = found.get(file);
    if (known !== undefined) return known;
    found.set(file, true);
    const imports = [...readFileSync(file, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)"/gm)].map((m) => m[1]!);
    const ok = imports.every((name) => {
      // protobufjs has the well-known types built in (google/protobuf/*), not all of them as files.
      if (name.startsWith('google/protobuf/')) return true;
      const dir = this.#includeDirs.find((d) => existsSync(join(d, name)));
      return dir !== undefined && this.#importsFound(join(dir, name), found);
    });
    found.set(file, ok);
    return ok;
  }

  #lookup(fullName: string): protobuf.Type | null {
    try {
      return this.#root.lookupType(fullName);
    } catch {
      return null;
    }
  }

  /** Read `json` as a message of `type`. */
  read(type: protobuf.Type | string, json: unknown, path = ''): ReadResult {
    const resolved = typeof type === 'string' ? this.resolveType(type) : type;
    if (!resolved) throw new TypeError(`unknown message type ${String(type)}`);
    const problems: string[] = [];
    const value = this.#message(resolved, json, path || resolved.name, problems);
    return { value: (value ?? {}) as Record<string, unknown>, problems };
  }

  #fields(type: protobuf.Type): Map<string, protobuf.Field> {
    let map = this.#fieldsByName.get(type);
    if (!map) {
      map = new Map();
      for (const field of type.fieldsArray) {
        field.resolve();
        map.set(field.name, field);
        map.set(jsonName(field), field);
      }
      this.#fieldsByName.set(type, map);
    }
    return map;
  }

  #message(type: protobuf.Type, json: unknown, path: string, problems: string[]): unknown {
    const name = type.fullName;
    if (name in WRAPPERS) {
      const scalar = this.#scalar(WRAPPERS[name]!, json, path, problems);
      return scalar === undefined ? undefined : { value: scalar };
    }
    switch (name) {
      case '.google.protobuf.Duration':
        return this.#duration(json, path, problems);
      case '.google.protobuf.Timestamp':
        return this.#timestamp(json, path, problems);
      case '.google.protobuf.Struct':
        if (!isPlainObject(json)) {
          problems.push(`${path}: expected an object (google.protobuf.Struct), got ${describe(json)}`);
          return undefined;
        }
        return this.#struct(json);
      case '.google.protobuf.Value':
        return this.#value(json);
      case '.google.protobuf.ListValue':
        if (!Array.isArray(json)) {
          problems.push(`${path}: expected a list (google.protobuf.ListValue), got ${describe(json)}`);
          return undefined;
        }
        return { values: json.map((v) => this.#value(v)) };
      case '.google.protobuf.FieldMask':
        if (typeof json !== 'string') {
          problems.push(`${path}: expected a string (google.protobuf.FieldMask), got ${describe(json)}`);
          return undefined;
        }
        return { paths: json === '' ? [] : json.split(',').map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)) };
      case '.google.protobuf.Any':
        return this.#any(json, path, problems);
      default:
        return this.#object(type, json, path, problems);
    }
  }

  #object(type: protobuf.Type, json: unknown, path: string, problems: string[]): unknown {
    if (!isPlainObject(json)) {
      problems.push(`${path}: expected an object (${type.fullName.slice(1)}), got ${describe(json)}`);
      return undefined;
    }
    const fields = this.#fields(type);
    const out: Record<string, unknown> = {};
    const seen = new Map<protobuf.Field, string>();
    for (const [key, raw] of Object.entries(json)) {
      const field = fields.get(key);
      const at = `${path}.${key}`;
      if (!field) {
        problems.push(`${at}: unknown field of ${type.fullName.slice(1)}`);
        continue;
      }
      const other = seen.get(field);
      if (other !== undefined) {
        problems.push(`${at}: the same field as ${path}.${other}`);
        continue;
      }
      seen.set(field, key);
      // null stands for "not set" in the JSON mapping (except for google.protobuf.Value).
      if (raw === null && field.resolvedType?.fullName !== '.google.protobuf.Value') continue;
      if ((field.options as Record<string, unknown> | undefined)?.deprecated === true) {
        problems.push(`${at}: deprecated field of ${type.fullName.slice(1)}`);
      }
      const converted = this.#field(field, raw, at, problems);
      if (converted !== undefined) out[field.name] = converted;
    }
    for (const oneof of type.oneofsArray) {
      const set = oneof.fieldsArray.filter((f) => out[f.name] !== undefined).map((f) => f.name);
      if (set.length > 1) problems.push(`${path}: ${set.join(' and ')} are one of ${oneof.name}: set only one`);
      const required = (oneof.options as Record<string, unknown> | undefined)?.['(validate.required)'] === true;
      if (required && set.length === 0) {
        problems.push(`${path}: one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} is required (${oneof.name})`);
      }
    }
    for (const field of type.fieldsArray) this.#validateRules(field, out[field.name], `${path}.${field.name}`, problems);
    return out;
  }

  #field(field: protobuf.Field, raw: unknown, path: string, problems: string[]): unknown {
    if (field.map) {
      if (!isPlainObject(raw)) {
        problems.push(`${path}: expected an object (map), got ${describe(raw)}`);
        return undefined;
      }
      const keyType = (field as unknown as protobuf.MapField).keyType;
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(raw)) {
        if (keyType === 'bool' && key !== 'true' && key !== 'false') problems.push(`${path}: map key ${JSON.stringify(key)} is not true or false`);
        else if (keyType !== 'string' && keyType !== 'bool') this.#scalar(keyType, key, `${path}: map key`, problems);
        const converted = this.#single(field, value, `${path}.${key}`, problems);
        if (converted !== undefined) out[key] = converted;
      }
      return out;
    }
    if (field.repeated) {
      if (!Array.isArray(raw)) {
        problems.push(`${path}: expected a list, got ${describe(raw)}`);
        return undefined;
      }
      return raw.map((item, i) => this.#single(field, item, `${path}[${i}]`, problems));
    }
    return this.#single(field, raw, path, problems);
  }

  #single(field: protobuf.Field, raw: unknown, path: string, problems: string[]): unknown {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Enum) return this.#enum(resolved, raw, path, problems);
    if (resolved instanceof protobuf.Type) return this.#message(resolved, raw, path, problems);
    return this.#scalar(field.type, raw, path, problems);
  }

  #enum(type: protobuf.Enum, raw: unknown, path: string, problems: string[]): unknown {
    if (typeof raw === 'string') {
      if (raw in type.values) return raw;
      problems.push(`${path}: ${JSON.stringify(raw)} is not a value of ${type.fullName.slice(1)} (${Object.keys(type.values).join(', ')})`);
      return undefined;
    }
    if (typeof raw === 'number' && Number.isInteger(raw)) {
      if (type.valuesById[raw] !== undefined) return type.valuesById[raw];
      problems.push(`${path}: ${raw} is not a value of ${type.fullName.slice(1)}`);
      return undefined;
    }
    problems.push(`${path}: expected a name of ${type.fullName.slice(1)}, got ${describe(raw)}`);
    return undefined;
  }

  #scalar(kind: string, raw: unknown, path: string, problems: string[]): unknown {
    const range = INT_RANGES[kind];
    if (range) {
      let n: bigint | undefined;
      if (typeof raw === 'number' && Number.isSafeInteger(raw)) n = BigInt(raw);
      else if (typeof raw === 'string' && /^-?\d+$/.test(raw)) n = BigInt(raw);
      if (n === undefined) {
        problems.push(`${path}: expected an integer (${kind}), got ${describe(raw)}`);
        return undefined;
      }
      if (n < range[0] || n > range[1]) {
        problems.push(`${path}: ${n} is out of range for ${kind}`);
        return undefined;
      }
      return kind.endsWith('64') ? n.toString() : Number(n);
    }
    switch (kind) {
      case 'double':
      case 'float':
        if (typeof raw === 'number') return raw;
        if (typeof raw === 'string' && (/^(NaN|-?Infinity)$/.test(raw) || (raw.trim() !== '' && !Number.isNaN(Number(raw))))) return Number(raw);
        problems.push(`${path}: expected a number (${kind}), got ${describe(raw)}`);
        return undefined;
      case 'bool':
        if (typeof raw === 'boolean') return raw;
        problems.push(`${path}: expected true or false, got ${describe(raw)}`);
        return undefined;
      case 'string':
        if (typeof raw === 'string') return raw;
        problems.push(`${path}: expected a string, got ${describe(raw)}${typeof raw === 'number' ? ' (quote it)' : ''}`);
        return undefined;
      case 'bytes':
        if (typeof raw === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(raw)) return raw.replace(/-/g, '+').replace(/_/g, '/');
        problems.push(`${path}: expected base64 bytes, got ${describe(raw)}`);
        return undefined;
      default:
        throw new Error(`${path}: unhandled scalar type ${kind}`);
    }
  }

  #duration(raw: unknown, path: string, problems: string[]): unknown {
    const m = typeof raw === 'string' ? DURATION.exec(raw) : null;
    if (!m) {
      problems.push(`${path}: expected a duration such as "0.5s" or "10s", got ${describe(raw)}`);
      return undefined;
    }
    const seconds = BigInt(m[2]!);
    if (seconds > MAX_DURATION_SECONDS) {
      problems.push(`${path}: duration out of range`);
      return undefined;
    }
    const sign = m[1] ? -1 : 1;
    const nanos = Number((m[3] ?? '').padEnd(9, '0'));
    return { seconds: (BigInt(sign) * seconds).toString(), nanos: sign * nanos };
  }

  #timestamp(raw: unknown, path: string, problems: string[]): unknown {
    if (typeof raw !== 'string' || !TIMESTAMP.test(raw) || Number.isNaN(Date.parse(raw))) {
      problems.push(`${path}: expected an RFC 3339 timestamp, got ${describe(raw)}`);
      return undefined;
    }
    const ms = Date.parse(raw);
    const fraction = /\.(\d{1,9})/.exec(raw)?.[1] ?? '';
    return { seconds: String(Math.floor(ms / 1000)), nanos: Number(fraction.padEnd(9, '0')) };
  }

  #struct(json: Record<string, unknown>): unknown {
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(json)) fields[k] = this.#value(v);
    return { fields };
  }

  #value(json: unknown): unknown {
    const kind = (json_: string, value: unknown) => ({ [this.#valueField(json_)]: value });
    if (json === null || json === undefined) return kind('nullValue', 'NULL_VALUE');
    if (typeof json === 'number') return kind('numberValue', json);
    if (typeof json === 'string') return kind('stringValue', json);
    if (typeof json === 'boolean') return kind('boolValue', json);
    if (Array.isArray(json)) return kind('listValue', { values: json.map((v) => this.#value(v)) });
    return kind('structValue', this.#struct(json as Record<string, unknown>));
  }

  /**
   * The name google.protobuf.Value's field has in this root: protobufjs' bundled
   * struct.proto names them in camelCase whatever keepCase says; one read from
   * a .proto file with keepCase has them in snake_case.
   */
  #valueField(json: string): string {
    const field = this.#fields(this.#root.lookupType('google.protobuf.Value')).get(json);
    if (!field) throw new Error(`google.protobuf.Value has no field ${json}`);
    return field.name;
  }

  #any(raw: unknown, path: string, problems: string[]): unknown {
    if (!isPlainObject(raw)) {
      problems.push(`${path}: expected an object with "@type" (google.protobuf.Any), got ${describe(raw)}`);
      return undefined;
    }
    const url = raw['@type'];
    if (typeof url !== 'string' || !url.includes('/')) {
      problems.push(`${path}: "@type" must be a type URL such as type.googleapis.com/package.Message`);
      return undefined;
    }
    const typeName = url.slice(url.lastIndexOf('/') + 1);
    const type = this.resolveType(typeName);
    if (!type) {
      problems.push(`${path}: "@type" names ${typeName}, which is not a known message type`);
      return undefined;
    }
    const at = `${path}<${type.name}>`;
    const { '@type': _, ...rest } = raw;
    let converted: unknown;
    if (SPECIAL_JSON.has(type.fullName)) {
      const extra = Object.keys(rest).filter((k) => k !== 'value');
      for (const key of extra) problems.push(`${at}.${key}: unknown field (${type.fullName.slice(1)} in an Any takes "value")`);
      converted = this.#message(type, rest.value, `${at}.value`, problems);
    } else {
      converted = this.#object(type, rest, at, problems);
    }
    if (converted === undefined) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = type.encode(type.fromObject(converted as Record<string, unknown>)).finish();
    } catch (error) {
      problems.push(`${at}: cannot encode: ${(error as Error).message}`);
      return undefined;
    }
    return { type_url: url, value: bytes };
  }

  /** protoc-gen-validate rules Envoy checks when it loads a configuration. */
  #validateRules(field: protobuf.Field, value: unknown, path: string, problems: string[]): void {
    const rules = this.#rules(field);
    if (!rules) return;
    // A member of a oneof (or a proto3 optional) that is not set is not validated.
    if (value === undefined && field.partOf) return;
    // FieldRules: one rule set for the field's type, plus "message" (required, skip) beside it.
    for (const [kind, rule] of Object.entries(rules)) {
      if (rule && typeof rule === 'object') this.#validateRule(field, kind, rule, value, path, problems);
    }
  }

  #validateRule(field: protobuf.Field, kind: string, rule: Record<string, unknown>, value: unknown, path: string, problems: string[]): void {
    const wrapped = field.resolvedType?.fullName && field.resolvedType.fullName in WRAPPERS;
    if (rule.required === true && value === undefined) {
      problems.push(`${path}: required`);
      return;
    }
    if (field.repeated && kind === 'repeated') {
      const count = Array.isArray(value) ? value.length : 0;
      if (typeof rule.min_items === 'number' && count < rule.min_items) problems.push(`${path}: needs at least ${rule.min_items} item(s)`);
      if (typeof rule.max_items === 'number' && count > rule.max_items) problems.push(`${path}: at most ${rule.max_items} item(s)`);
      return;
    }
    if (field.map && kind === 'map') {
      const count = isPlainObject(value) ? Object.keys(value).length : 0;
      if (typeof rule.min_pairs === 'number' && count < rule.min_pairs) problems.push(`${path}: needs at least ${rule.min_pairs} entries`);
      return;
    }
    if (field.repeated || field.map) return;
    if (kind === 'duration') {
      if (value === undefined) return;
      const n = durationNanos(value);
      const check = (op: string, ok: (limit: bigint) => boolean) => {
        if (rule[op] !== undefined && !ok(durationNanos(rule[op]))) problems.push(`${path}: must be ${op} ${durationNanos(rule[op]) / 1_000_000n} ms`);
      };
      check('gt', (l) => n > l);
      check('gte', (l) => n >= l);
      check('lt', (l) => n < l);
      check('lte', (l) => n <= l);
      return;
    }
    if (kind === 'string') {
      if (wrapped && value === undefined) return;
      const s = wrapped ? ((value as { value?: string }).value ?? '') : ((value as string | undefined) ?? '');
      if (rule.ignore_empty === true && s === '') return;
      if (typeof rule.min_len === 'number' && [...s].length < rule.min_len) problems.push(`${path}: needs at least ${rule.min_len} character(s)`);
      if (typeof rule.max_len === 'number' && [...s].length > rule.max_len) problems.push(`${path}: at most ${rule.max_len} characters`);
      if (typeof rule.min_bytes === 'number' && Buffer.byteLength(s) < rule.min_bytes) problems.push(`${path}: needs at least ${rule.min_bytes} byte(s)`);
      if (typeof rule.pattern === 'string') {
        // RE2 syntax; the patterns Envoy uses are also valid JavaScript. One that is not is skipped.
        let regex: RegExp | undefined;
        try {
          regex = new RegExp(rule.pattern, 'u');
        } catch {
          regex = undefined;
        }
        if (regex && !regex.test(s)) problems.push(`${path}: must match ${rule.pattern}`);
      }
      return;
    }
    if (kind in INT_RANGES || kind === 'double' || kind === 'float') {
      if (wrapped && value === undefined) return;
      const raw = wrapped ? (value as { value?: unknown }).value : value;
      const n = Number(raw ?? 0);
      const limit = (op: string) => Number(rule[op]);
      if (rule.ignore_empty === true && n === 0) return;
      if (rule.gt !== undefined && !(n > limit('gt'))) problems.push(`${path}: must be greater than ${limit('gt')}`);
      if (rule.gte !== undefined && !(n >= limit('gte'))) problems.push(`${path}: must be at least ${limit('gte')}`);
      if (rule.lt !== undefined && !(n < limit('lt'))) problems.push(`${path}: must be less than ${limit('lt')}`);
      if (rule.lte !== undefined && !(n <= limit('lte'))) problems.push(`${path}: must be at most ${limit('lte')}`);
    }
  }

  #rules(field: protobuf.Field): Rules | undefined {
    const parsed = (field as unknown as { parsedOptions?: Array<Record<string, unknown>> | null }).parsedOptions;
    if (!parsed) return undefined;
    for (const option of parsed) {
      const rules = option['(validate.rules)'];
      if (rules && typeof rules === 'object') return rules as Rules;
    }
    return undefined;
  }
}
