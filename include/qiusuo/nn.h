// All of qiusuo::nn: the Module base, layers, containers and initialisers.
#pragma once
#include "qiusuo/nn/activation.h"
#include "qiusuo/nn/init.h"
#include "qiusuo/nn/linear.h"
#include "qiusuo/nn/module.h"
#include "qiusuo/nn/moe.h"
#include "qiusuo/nn/positional.h"
#include "qiusuo/nn/sampling.h"
#include "qiusuo/nn/sequential.h"
#include "qiusuo/nn/transformer.h"
