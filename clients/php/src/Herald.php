<?php

/**
 * The Herald PHP client without Composer: `require __DIR__ . '/path/to/clients/php/src/Herald.php';`
 * loads every class (`Herald\Client`, `Herald\DomainEventOutcome`, `Herald\HeraldException`,
 * `Herald\NetworkException`). With Composer, the PSR-4 autoloader of composer.json loads them
 * instead and this file is not needed.
 */

declare(strict_types=1);

require_once __DIR__ . '/HeraldException.php';
require_once __DIR__ . '/NetworkException.php';
require_once __DIR__ . '/DomainEventOutcome.php';
require_once __DIR__ . '/Client.php';
