// All of qiusuo::optim: optimisers, gradient clipping and learning-rate schedules.
#pragma once
#include "qiusuo/optim/optim.h"
#include "qiusuo/optim/schedule.h"
