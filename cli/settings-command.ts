/**
 * `ftsctl settings`: shows the prober settings of a cluster, and with `--set key=value`
 * (repeatable; `key=default` restores a default) changes them. The new settings are
 * validated as a whole (ranges, and the rules between them) before anything is written;
 * the prober reads them again after every round.
 */
import { InvalidArgumentError } from 'commander';
import { DEFAULT_SETTINGS, type Settings } from '../lambdas/core/settings';
import { table } from './format';

/** What `--set` asked for, by setting: a value, or `default`. */
export type SettingChanges = Record<string, number | boolean | 'default'>;

const KNOWN = Object.keys(DEFAULT_SETTINGS);

/** `--set key=value`, repeatable: a number, true, false, or default. */
export function collectSet(value: string, previous: SettingChanges = {}): SettingChanges {
  const m = /^([A-Za-z]+)=(.+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`--set takes key=value (e.g. probeIntervalSeconds=2, autoActivateStandby=true, probeRetries=default), got "${value}"`);
  const [, key, raw] = m;
  if (!KNOWN.includes(key)) throw new InvalidArgumentError(`--set: unknown setting ${key}; known settings are ${KNOWN.join(', ')}`);
  if (key in previous) throw new InvalidArgumentError(`--set ${key} is given twice`);
  const kind = typeof DEFAULT_SETTINGS[key as keyof Settings];
  let parsed: number | boolean | 'default';
  if (raw === 'default') parsed = 'default';
  else if (kind === 'boolean') {
    if (raw !== 'true' && raw !== 'false') throw new InvalidArgumentError(`--set ${key} takes true, false or default, got "${raw}"`);
    parsed = raw === 'true';
  } else {
    if (!/^-?\d+(\.\d+)?$/.test(raw)) throw new InvalidArgumentError(`--set ${key} takes a number or default, got "${raw}"`);
    parsed = Number(raw);
  }
  return { ...previous, [key]: parsed };
}

/** The settings with the changes applied (validated by the caller, as a whole). */
export function applySettingChanges(current: Settings, changes: SettingChanges): Settings {
  const next: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(changes)) next[key] = value === 'default' ? DEFAULT_SETTINGS[key as keyof Settings] : value;
  return next as Settings;
}

/** Settings whose values differ between two sets. */
export const changedSettings = (before: Settings, after: Settings): string[] => KNOWN.filter((k) => before[k as keyof Settings] !== after[k as keyof Settings]);

/** The text `ftsctl settings` prints: every setting, its value and its default; or what a change changed. */
export function formatSettings(clusterId: string, settings: Settings, before?: Settings): string {
  if (before) {
    const changed = changedSettings(before, settings);
    if (!changed.length) return `Settings of cluster ${clusterId}: unchanged (already so)`;
    return [
      `Settings of cluster ${clusterId} changed (the prober applies them from its next round):`,
      table(['setting', 'before', 'after'], changed.map((k) => [k, String(before[k as keyof Settings]), String(settings[k as keyof Settings])])),
    ].join('\n');
  }
  return [
    `Settings of cluster ${clusterId}:`,
    table(['setting', 'value', 'default'], KNOWN.map((k) => {
      const value = settings[k as keyof Settings];
      const fallback = DEFAULT_SETTINGS[k as keyof Settings];
      return [k, String(value), value === fallback ? '' : String(fallback)];
    })),
  ].join('\n');
}
