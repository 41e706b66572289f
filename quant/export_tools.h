/* The writers of the formats another tool applies (HAWQ bit_config, ModelOpt
 * quant_cfg, llama-quantize --tensor-type), each addressing layers by the
 * consumer's names (quant/namemap.h). Internal to quant/export.c. */
#ifndef BA_QUANT_EXPORT_TOOLS_H
#define BA_QUANT_EXPORT_TOOLS_H

#include "quant/export.h"

ba_status ba_export_hawq_text(const ba_plan_t *p, const ba_model_t *m, const ba_export_opts_t *o,
                              ba_export_report_t *rep, char **text, ba_error *err);
/* py: the Python module variant (QUANT_CFG = {...}, integer block_sizes keys). */
ba_status ba_export_modelopt_text(const ba_plan_t *p, const ba_model_t *m, int py, const ba_export_opts_t *o,
                                  ba_export_report_t *rep, char **text, ba_error *err);
ba_status ba_export_llama_text(const ba_plan_t *p, const ba_model_t *m, const ba_export_opts_t *o,
                               ba_export_report_t *rep, char **text, ba_error *err);

/* The HAWQ (Zhen-Dong/HAWQ utils/models/q_resnet.py) name of a torchvision
 * ResNet module path, with the activation quantizer in front of it:
 * "conv1" → quant_init_block_convbn / quant_input, "layer2.0.conv1" →
 * stage2.unit1.quant_convbn1 / stage2.unit1.quant_act, "layer2.0.conv2" →
 * …quant_convbn2 / …quant_act1, "layer2.0.downsample.0" →
 * …quant_identity_convbn (its input is the unit's quant_act), "fc" →
 * quant_output / quant_act_output. 0 when the path is none of these. */
int ba_export_hawq_resnet_name(const char *module, char *w, size_t wcap, char *act, size_t acap);

#endif
