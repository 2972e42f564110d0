// SPDX-License-Identifier: MIT
#include "log.h"

int env_verbosity;
