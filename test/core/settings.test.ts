import { DEFAULT_SETTINGS, parseSettings, worstCaseProbeSeconds } from '../../lambdas/core/settings';
import { ValidationError } from '../../lambdas/core/errors';

describe('settings', () => {
  test('defaults are far faster than Greenplum yet tolerate a slow probe', () => {
    expect(DEFAULT_SETTINGS).toEqual({
      probeIntervalSeconds: 2, probeTimeoutSeconds: 5, probeRetries: 3, probeRetryDelaySeconds: 1,
      mirrorDownGracePeriodSeconds: 10, replicationAttempts: 3, probeParallelism: 16,
      promotionStaleSeconds: 60, failoverRetrySeconds: 15, catchUpLagBytes: 1048576, crashRecoveryGraceSeconds: 30, resetLoopThreshold: 3, resetLoopWindowSeconds: 60,
      standbySynchronous: true, standbyLagAlarmBytes: 16 * 1024 * 1024, autoActivateStandby: false,
    });
    // A refused connection is detected within interval + retries x delay; a slow one gets > 20 s.
    const s = DEFAULT_SETTINGS;
    expect(s.probeIntervalSeconds + s.probeRetries * s.probeRetryDelaySeconds).toBeLessThanOrEqual(5);
    expect(worstCaseProbeSeconds(s)).toBeGreaterThan(20);
  });

  test('partial settings take defaults for the rest', () => {
    expect(parseSettings({ probeIntervalSeconds: 5 })).toEqual({ ...DEFAULT_SETTINGS, probeIntervalSeconds: 5, mirrorDownGracePeriodSeconds: 10 });
  });

  test.each([
    [{ probeIntervalSeconds: 0 }, /probeIntervalSeconds must be at least 1 \(allowed 1 to 600\)/],
    [{ probeTimeoutSeconds: 100 }, /probeTimeoutSeconds must be at most 60 \(allowed 0.5 to 60\)/],
    [{ probeRetries: 2.5 }, /probeRetries/],
    [{ probeRetries: 'three' }, /probeRetries must be a number \(allowed 0 to 10\)/],
    [{ probeParallelism: 0 }, /probeParallelism must be at least 1/],
    [{ replicationAttempts: 1000 }, /replicationAttempts must be at most 100/],
    [{ probeIntervall: 2 }, /unknown setting\(s\) probeIntervall; known settings are probeIntervalSeconds/],
    [{ probeIntervalSeconds: 20, mirrorDownGracePeriodSeconds: 5 }, /mirrorDownGracePeriodSeconds \(5\) must be 0 or at least probeIntervalSeconds \(20\)/],
    [{ probeTimeoutSeconds: 20, probeRetries: 3 }, /allow a probe to take 83 s; it must fit in 50 s/],
    [{ probeIntervalSeconds: 1, probeRetryDelaySeconds: 10, mirrorDownGracePeriodSeconds: 0 }, /probeRetryDelaySeconds \(10\) must be less than 10 x probeIntervalSeconds/],
    ['fast', /settings/],
    [{ probeRetries: 2.5 }, /probeRetries must be a whole number \(allowed 0 to 10\)/],
    [{ standbySynchronous: 'yes' }, /^invalid settings: standbySynchronous must be a boolean$/],
    [{ autoActivateStandby: 1 }, /^invalid settings: autoActivateStandby must be a boolean$/],
    [{ standbyLagAlarmBytes: -1 }, /standbyLagAlarmBytes must be at least 0 \(allowed 0 to 1099511627776\)/],
    [{ standbyLagAlarmBytes: 1.5 }, /standbyLagAlarmBytes must be a whole number/],
    [{ autoActivateStandby: true, standbySynchronous: false }, /autoActivateStandby needs standbySynchronous: an asynchronous standby may lack commits the coordinator acknowledged, and an automatic activation would lose them/],
  ])('rejects %j', (input, message) => {
    expect(() => parseSettings(input)).toThrow(ValidationError);
    expect(() => parseSettings(input)).toThrow(message);
  });

  test('the standby settings: asynchronous mode, a lag threshold, automatic activation with a synchronous standby', () => {
    expect(parseSettings({ standbySynchronous: false })).toMatchObject({ standbySynchronous: false, autoActivateStandby: false });
    expect(parseSettings({ standbyLagAlarmBytes: 0 }).standbyLagAlarmBytes).toBe(0);
    expect(parseSettings({ autoActivateStandby: true })).toMatchObject({ standbySynchronous: true, autoActivateStandby: true });
  });
});
