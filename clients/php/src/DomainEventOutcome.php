<?php

declare(strict_types=1);

namespace Herald;

/**
 * What Herald did with one domain event (one entry of the 202 answer's `events`).
 *
 * `accepted`, `duplicate` and `ignored` are all successes: a duplicate is a repeat of an `id`
 * Herald already has (the outcome is the original one, nothing is stored or sent again), an
 * ignored event is valid and stored but has nothing to broadcast (`reason` says why, e.g. a
 * donation below the large-donation threshold).
 */
final class DomainEventOutcome
{
    public const ACCEPTED = 'accepted';
    public const DUPLICATE = 'duplicate';
    public const IGNORED = 'ignored';

    /**
     * @param list<string>         $notificationIds ids of the inbox notifications stored for users
     * @param array<string, mixed> $raw             the outcome as Herald sent it
     */
    public function __construct(
        public readonly string $id,
        public readonly string $type,
        public readonly string $status,
        public readonly ?string $reason,
        public readonly array $notificationIds,
        public readonly int $broadcastsQueued,
        public readonly array $raw,
    ) {
    }

    /**
     * Reads one outcome of Herald's answer.
     *
     * @param mixed $outcome one decoded entry of the answer's `events`
     *
     * @throws \UnexpectedValueException when it is not an outcome
     */
    public static function fromArray(mixed $outcome): self
    {
        if (
            !is_array($outcome)
            || !is_string($outcome['id'] ?? null)
            || !is_string($outcome['type'] ?? null)
            || !is_string($outcome['status'] ?? null)
        ) {
            throw new \UnexpectedValueException('an outcome needs the strings id, type and status');
        }
        $reason = $outcome['reason'] ?? null;
        $ids = $outcome['notification_ids'] ?? [];
        $queued = $outcome['broadcasts_queued'] ?? 0;

        return new self(
            $outcome['id'],
            $outcome['type'],
            $outcome['status'],
            is_string($reason) ? $reason : null,
            is_array($ids) ? array_values(array_map('strval', array_filter($ids, 'is_scalar'))) : [],
            is_int($queued) ? $queued : 0,
            $outcome,
        );
    }

    /** Stored and queued for broadcast. */
    public function isAccepted(): bool
    {
        return $this->status === self::ACCEPTED;
    }

    /** This id was sent before; the outcome is the original one and nothing new happened. */
    public function isDuplicate(): bool
    {
        return $this->status === self::DUPLICATE;
    }

    /** Valid and stored, but nothing to broadcast; {@see $reason} says why. */
    public function isIgnored(): bool
    {
        return $this->status === self::IGNORED;
    }
}
