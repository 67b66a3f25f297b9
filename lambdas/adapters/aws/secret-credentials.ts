/** PostgreSQL credentials from a Secrets Manager secret (`{"username": ..., "password": ...}`), cached briefly. */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/** Credentials the prober and the workflow steps connect with. */
export interface SecretCredentials {
  user: string;
  password?: string;
}

const CACHE_MS = 5 * 60_000;

/** A provider that reads the secret at most every five minutes (rotation is picked up). */
export function secretCredentialsProvider(secretArn: string, client = new SecretsManagerClient({})): () => Promise<SecretCredentials> {
  let cached: { value: SecretCredentials; at: number } | undefined;
  return async () => {
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.value;
    const out = await client.send(new GetSecretValueCommand({ SecretId: secretArn }));
    const parsed = JSON.parse(out.SecretString ?? '{}') as { username?: string; password?: string };
    if (!parsed.username) throw new Error(`secret ${secretArn} has no "username" field`);
    cached = { value: { user: parsed.username, password: parsed.password }, at: Date.now() };
    return cached.value;
  };
}
